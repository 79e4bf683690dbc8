"""Server pieces shared by both servers: logging policy, the reader's inbox, and more."""
