"""The systems pssync connects, by name. No I/O here."""

from enum import StrEnum


class System(StrEnum):
    CRM = "CRM"
    PSA = "PSA"
    ERP = "ERP"
    HCM = "HCM"
    PSSYNC = "PSSYNC"
    """pssync itself: owns enterprise IDs and the links between systems."""
