# A cockpit-agent AMI from the stock AMI of Debian 12, Ubuntu 24.04, RHEL 9 or Rocky 9:
# packaging/ami/bake.sh runs on a builder instance with the agent's package, and the bake's
# report (compliance scan, manifest) comes back under output/<source>/.
#
# Written for Packer 1.6.6 (Debian 12's package, amazon-ebs built in): no data sources and no
# required_plugins. Nothing region- or account-specific is written here: the region is a
# variable without a default (-var region=... or PKR_VAR_region), the source AMIs are found
# by name and their publisher's public owner id.
#
#   packer build -var region=<region> -var package_dir=dist -only=amazon-ebs.debian12 \
#       packaging/ami/cockpit-agent.pkr.hcl

variable "region" {
  type        = string
  description = "AWS region of the build and of the AMI (no default: -var region=... or PKR_VAR_region)."
}

variable "package_dir" {
  type        = string
  description = "Directory with cockpit-agent_<version>_amd64.deb and/or cockpit-agent-<version>.x86_64.rpm; the bake takes the one for the OS."
  default     = "dist"
}

variable "scan" {
  type        = string
  description = "Compliance scan in the bake: auto (lynis on Debian/Ubuntu, OpenSCAP on RHEL/Rocky), lynis, openscap or none."
  default     = "auto"
}

variable "upgrade" {
  type        = bool
  description = "Apply the OS's updates in the bake (bake.sh --upgrade)."
  default     = true
}

variable "instance_type" {
  type        = string
  description = "Builder instance type (any x86_64 type: the bake needs no metal)."
  default     = "m6i.large"
}

variable "subnet_id" {
  type        = string
  description = "Subnet of the builder instance; empty = the default VPC."
  default     = ""
}

variable "ami_prefix" {
  type        = string
  description = "AMI names are <ami_prefix>-<os>-<UTC time>."
  default     = "cockpit-agent"
}

locals {
  stamp    = formatdate("YYYYMMDD-hhmmss", timestamp())
  work_dir = "/tmp/cockpit-agent-bake"
  report   = "/var/lib/cockpit-agent-bake"
  # Publishers' AWS account ids (public, the same in every commercial region).
  owner = {
    debian    = "136693071363"
    canonical = "099720109477"
    redhat    = "309956199498"
    rocky     = "792107900819"
  }
}

source "amazon-ebs" "debian12" {
  region        = var.region
  instance_type = var.instance_type
  subnet_id     = var.subnet_id
  ssh_username  = "admin"
  ami_name      = "${var.ami_prefix}-debian12-${local.stamp}"
  tags = {
    Name            = "${var.ami_prefix}-debian12-${local.stamp}"
    "cockpit-agent" = "debian12"
  }
  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      architecture        = "x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = [local.owner.debian]
    most_recent = true
  }
}

source "amazon-ebs" "ubuntu2404" {
  region        = var.region
  instance_type = var.instance_type
  subnet_id     = var.subnet_id
  ssh_username  = "ubuntu"
  ami_name      = "${var.ami_prefix}-ubuntu2404-${local.stamp}"
  tags = {
    Name            = "${var.ami_prefix}-ubuntu2404-${local.stamp}"
    "cockpit-agent" = "ubuntu2404"
  }
  source_ami_filter {
    filters = {
      name                = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
      architecture        = "x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = [local.owner.canonical]
    most_recent = true
  }
}

source "amazon-ebs" "rhel9" {
  region        = var.region
  instance_type = var.instance_type
  subnet_id     = var.subnet_id
  ssh_username  = "ec2-user"
  ami_name      = "${var.ami_prefix}-rhel9-${local.stamp}"
  tags = {
    Name            = "${var.ami_prefix}-rhel9-${local.stamp}"
    "cockpit-agent" = "rhel9"
  }
  source_ami_filter {
    filters = {
      name                = "RHEL-9.*_HVM-*-x86_64-*"
      architecture        = "x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = [local.owner.redhat]
    most_recent = true
  }
}

source "amazon-ebs" "rocky9" {
  region        = var.region
  instance_type = var.instance_type
  subnet_id     = var.subnet_id
  ssh_username  = "rocky"
  ami_name      = "${var.ami_prefix}-rocky9-${local.stamp}"
  tags = {
    Name            = "${var.ami_prefix}-rocky9-${local.stamp}"
    "cockpit-agent" = "rocky9"
  }
  source_ami_filter {
    filters = {
      name                = "Rocky-9-EC2-Base-9.*.x86_64"
      architecture        = "x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = [local.owner.rocky]
    most_recent = true
  }
}

build {
  sources = [
    "source.amazon-ebs.debian12",
    "source.amazon-ebs.ubuntu2404",
    "source.amazon-ebs.rhel9",
    "source.amazon-ebs.rocky9",
  ]

  provisioner "shell" {
    inline = ["mkdir -p ${local.work_dir}"]
  }

  provisioner "file" {
    source      = "${path.root}/bake.sh"
    destination = "${local.work_dir}/bake.sh"
  }

  # The directory's content (both packages may be there; the bake takes its family's).
  provisioner "file" {
    source      = "${var.package_dir}/"
    destination = "${local.work_dir}/"
  }

  provisioner "shell" {
    inline = [
      "sudo sh ${local.work_dir}/bake.sh ${var.upgrade ? "--upgrade" : ""} --scan ${var.scan} ${local.work_dir}",
    ]
  }

  provisioner "file" {
    direction   = "download"
    source      = "${local.report}/"
    destination = "output/${source.name}/"
  }

  provisioner "shell" {
    inline = ["sudo rm -rf ${local.work_dir}"]
  }

  post-processor "manifest" {
    output     = "output/packer-manifest.json"
    strip_path = true
  }
}
