"""cockpit-agent: turns an Outposts server or metal EC2 instance into a Cockpit-managed KVM host."""

__version__ = "0.1.0"
