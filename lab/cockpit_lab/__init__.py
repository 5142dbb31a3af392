"""The cockpit-agent lab: an emulated Outposts server in QEMU for end-to-end tests."""
