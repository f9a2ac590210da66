"""The lifecycles of scripts/soak through containerd's CRI and peapod's shim."""


class CriFrontEnd:
    name = "shim"

    def __init__(self, soak):
        self.soak = soak
