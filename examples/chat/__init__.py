"""The guide's real-time chat room: ``triows run examples.chat.app:app``."""
