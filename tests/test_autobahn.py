"""Autobahn conformance (issue 4): kosoku's fuzzing client against triows.serve.

Every backend (native, native over TLS, hypercorn) runs every case of
``tests.autobahn.CASES``: 1.* to 10.* and the compression subset 12.1.*, 13.1.*
(not on hypercorn: that backend does not negotiate permessage-deflate, see
docs/deployment.md, so every compression case would be UNIMPLEMENTED there).  No case may fail or be
unimplemented, and every NON-STRICT or INFORMATIONAL verdict must be one
documented with its reason.  Whole run: about 35 s (native), 50 s (native over
TLS) and 10 s (hypercorn) on two cores; ``scripts/autobahn`` runs the same from
the command line.
"""

from __future__ import annotations

from pathlib import Path

from tests import autobahn

from .conftest import Backend


async def test_autobahn_cases_pass(backend: Backend, tmp_path: Path) -> None:
    # The harness (shared with scripts/autobahn) serves by the backend's name.
    cases = autobahn.cases_for(backend.name)
    results = await autobahn.run(backend.name, cases, tmp_path, timeout=240)
    print(autobahn.table(results))
    assert autobahn.problems(results) == []
    # Every selected category ran (an empty selection must not pass quietly).
    ran = {case_id.split(".")[0] for case_id in results}
    assert ran == {case.split(".")[0] for case in cases}
    assert len(results) >= (301 if backend.name == "hypercorn" else 337)


def test_problems_are_reported() -> None:
    """The checker itself: failing, unimplemented and undocumented verdicts are caught."""
    results = {
        "1.1.1": {"behavior": "OK", "behaviorClose": "OK"},
        "3.2": {"behavior": "NON-STRICT", "behaviorClose": "OK"},
        "2.1": {"behavior": "NON-STRICT", "behaviorClose": "OK"},
        "5.1": {"behavior": "FAILED", "behaviorClose": "OK"},
        "6.1.1": {"behavior": "OK", "behaviorClose": "UNCLEAN"},
        "12.1.1": {"behavior": "UNIMPLEMENTED", "behaviorClose": "OK"},
    }
    assert autobahn.problems(results) == [
        "2.1: NON-STRICT, not in DOCUMENTED",
        "5.1: FAILED (closing: OK)",
        "6.1.1: OK (closing: UNCLEAN)",
        "12.1.1: UNIMPLEMENTED (closing: OK)",
    ]
    assert "| 3 | 1 | 0 | 1 |" in autobahn.table(results)
