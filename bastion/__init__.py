"""bastion: run the whole life of an SSH gateway host on AWS EC2."""

__version__ = "0.1.0"
