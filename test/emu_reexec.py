"""The opening of a test script that needs the API-server emulator:

    import emu_reexec  # noqa: E402
    HERE = emu_reexec.setup(__file__, __name__)

puts test/ and test/kubeemu on sys.path and, when the script runs as a
program with no emulator given (THAW_EMU_URL unset), runs it again under
test/with-emulator.sh, which starts one on a free port and stops it by PID
when the script ends. Returns test/'s path."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def setup(script, name):
    for p in (HERE, os.path.join(HERE, "kubeemu")):
        if p not in sys.path:
            sys.path.insert(0, p)
    if not os.environ.get("THAW_EMU_URL") and name == "__main__":
        os.execvp("sh", ["sh", os.path.join(HERE, "with-emulator.sh"), sys.executable,
                         os.path.abspath(script)] + sys.argv[1:])
    return HERE
