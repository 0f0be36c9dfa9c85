"""Fast tests run on any machine; tests/realxen runs only inside a real dom0
(tools/run-tests boots one per Debian suite and sets XENPRIVCMD_REALXEN=1);
tests/realxen_ssh only on the host while run-tests' bookworm dom0 runs sshd."""

import os

collect_ignore = [] if os.environ.get("XENPRIVCMD_REALXEN") == "1" else ["realxen"]
# tests/realxen_ssh runs on the host against a booted dom0's sshd (tools/run-tests sets it up)
if not os.environ.get("XENPRIVCMD_SSH_DOM0"):
    collect_ignore.append("realxen_ssh")
