"""twistd plugin: `twistd -n aimserver`. The module is named as a string so that
`twistd --help` imports nothing heavy."""

from twisted.application.service import ServiceMaker

aimserver = ServiceMaker(
    "aimserver",
    "aimserver.tap",
    "An AIM (OSCAR) server with multisession support",
    "aimserver",
)
