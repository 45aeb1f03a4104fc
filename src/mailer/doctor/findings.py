"""What `mailer doctor` found: one line per check, its level, what it saw and what to
do about it, in words for the person who runs the newsletter rather than its DNS."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    OK = "OK"
    NOTE = "NOTE"  # not checked, or fine as it is here: worth knowing, nothing to fix
    WARNING = "WARNING"  # mail goes out, but some receivers will like it less
    PROBLEM = "PROBLEM"  # mail will be refused or junked, or bounces lost: fix first


class Topic(StrEnum):
    SPF = "SPF"
    DKIM = "DKIM"
    DMARC = "DMARC"
    BOUNCES = "Bounces"
    RELAY = "Relay"


@dataclass(frozen=True)
class Finding:
    level: Level
    topic: Topic
    says: str
    fix: str = ""  # what to change, when there is something to change


def ok(topic: Topic, says: str) -> Finding:
    return Finding(Level.OK, topic, says)


def note(topic: Topic, says: str, fix: str = "") -> Finding:
    return Finding(Level.NOTE, topic, says, fix)


def warning(topic: Topic, says: str, fix: str) -> Finding:
    return Finding(Level.WARNING, topic, says, fix)


def problem(topic: Topic, says: str, fix: str) -> Finding:
    return Finding(Level.PROBLEM, topic, says, fix)


@dataclass(frozen=True)
class Diagnosis:
    """Every finding for the From domain, and what was looked at to reach them."""

    from_domain: str
    envelope_domain: str  # the domain SPF is checked for
    envelope_why: str  # why that one, in words
    resolver: str  # which DNS answered
    findings: tuple[Finding, ...]

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.level == Level.PROBLEM]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == Level.WARNING]

    def about(self, topic: Topic) -> list[Finding]:
        return [f for f in self.findings if f.topic == topic]
