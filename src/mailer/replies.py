"""What an SMTP reply means: the one table that decides it. The transport asks it about
every reply it gets (the greeting, MAIL, RCPT, the end of DATA), and nothing else decides
what counts against a reader. Bounce processing extends the same table with its rows.

A newsletter goes to one recipient per transaction, so a reply at the end of DATA is
about the message unless it says it is about the recipient; a refusal of the message
(spam, policy, size) must never count against the reader: it would, three issues
later, mark the whole list bounced."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Stage(StrEnum):
    GREETING = "greeting"  # the banner, EHLO/HELO, STARTTLS, AUTH
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"  # DATA itself and the reply after the final dot
    # a delivery put off until its retries ran out: its last temporary reply, or the
    # line dropped or timed out (no code)
    RAN_OUT = "retries ran out"
    # a delivery report (a bounce mail, RFC 3464) about one recipient, after the relay
    # took the message: its code is the diagnostic's, else its status's class, else 5xx
    # for a recipient it says failed and 4xx for one it says is delayed
    REPORT = "report"


class Verdict(StrEnum):
    SENT = "sent"  # accepted
    DEFERRED = "deferred"  # temporary: try this delivery again later
    BOUNCE = "bounce"  # the address does not exist: failed, the reader is bounced at once
    READER = "reader"  # this reader's mailbox refuses for good: failed, a strike (3 bounce)
    REFUSED = "refused"  # this recipient refused by policy: failed, counts against nobody
    CONTENT = "content"  # the message itself refused: the send stops, the issue is held
    STOP = "stop"  # our sender, login or relay refused: the send stops, all stays queued
    GAVE_UP = "gave up"  # put off till the retries ran out, not by the mailbox: failed, no one's
    SOFT = "soft"  # a report of a mailbox problem that may pass: a point on the bounce score

    @property
    def blames_reader(self) -> bool:
        return self in (Verdict.BOUNCE, Verdict.READER, Verdict.SOFT)


_ENHANCED = re.compile(r"^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b")
# the stages of an SMTP transaction (RAN_OUT is not one: its rows are its own)
ANY_STAGE = frozenset((Stage.GREETING, Stage.MAIL, Stage.RCPT, Stage.DATA))
_DELIVERY = frozenset((Stage.RCPT, Stage.DATA))
_BEFORE_DATA = frozenset((Stage.GREETING, Stage.MAIL, Stage.RCPT))


@dataclass(frozen=True)
class Rule:
    """One row: a reply at one of `stages` whose basic code matches `code`, whose
    enhanced status code (RFC 3463, "5.7.1") matches `enhanced` and whose text matches
    `text` (each a regular expression; None matches anything, and `enhanced=""` only a
    reply without an enhanced code) means `verdict`."""

    stages: frozenset[Stage]
    code: str | None
    enhanced: str | None
    text: str | None
    verdict: Verdict
    why: str

    def matches(self, stage: Stage, code: int, enhanced: str, reply: str) -> bool:
        return (
            stage in self.stages
            and (self.code is None or re.fullmatch(self.code, str(code)) is not None)
            and (
                self.enhanced is None
                or (enhanced == "" if self.enhanced == "" else _full(self.enhanced, enhanced))
            )
            and (self.text is None or re.search(self.text, reply, re.IGNORECASE) is not None)
        )


def _full(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def _rule(
    stages: frozenset[Stage] | Stage,
    code: str | None,
    enhanced: str | None,
    text: str | None,
    verdict: Verdict,
    why: str,
) -> Rule:
    where = frozenset((stages,)) if isinstance(stages, Stage) else stages
    return Rule(where, code, enhanced, text, verdict, why)


_NO_SUCH_USER = (
    r"user unknown|unknown user|no such (user|mailbox|recipient)|does not exist|"
    r"mailbox (unavailable|not found)|invalid (recipient|mailbox)"
)
_OUR_SENDER = (
    r"relay(ing)? (access )?(denied|not permitted)|authentication required|"
    r"sender address rejected|client host .*blocked|blocked using|"
    r"(black|block)listed"
)
_TOO_BIG = r"message size exceeds|too (large|big)"
# a refusal at RCPT without an enhanced code that speaks of spam or policy: about us
_POLICY = r"spam|policy|reputation|blocked|denied"
# a temporary reply about our sending (a provider's quota or rate), not a mailbox
_OUR_SENDING = r"\bsend(ing|er)\b|\brate\b|rate.limit|too (many|fast)|throttl"
_MAILBOX_FULL = r"mailbox( is)? full|over ?quota|quota exceeded|insufficient (user )?storage"
# a report's words for an address or domain that is gone
_GONE = (
    _NO_SUCH_USER + r"|no such domain|unknown (domain|host)|host (or domain name )?not found|"
    r"unrouteable|recipient not found|(account|address) (is |has been )?(disabled|closed|"
    r"deleted|inactive|suspended)|doesn't have an? \S+ account|no longer (active|in use)"
)
# a report's statuses for an address that is gone, and for what may pass
_GONE_STATUS = r"5\.1\.([1236]|10)|5\.2\.1|5\.4\.4"
_PASSING = r"4\.\d+\.\d+|5\.2\.[23]|5\.7\.\d+"
# a report's words for what may pass: a full mailbox, a message too big, spam or policy
_MAY_PASS = "|".join((_MAILBOX_FULL, _TOO_BIG, _POLICY, r"\bquota|would exceed"))

S, V = Stage, Verdict
# The table. The first row that matches decides; a new row goes above the broader row
# it refines. README.md ("When the relay says no") shows the same table.
RULES: tuple[Rule, ...] = (
    _rule(ANY_STAGE, r"2\d\d", None, None, V.SENT, "accepted"),
    _rule(ANY_STAGE, r"4\d\d", None, None, V.DEFERRED, "temporary: try again later"),
    # put off until the retries ran out: only a reply about the recipient's address or
    # mailbox counts against them; a relay putting off everyone (4.7.x, 4.3.x, 4.4.x,
    # greylisting, a bare 451), a dropped line or a time-out is not the reader's doing
    _rule(S.RAN_OUT, None, r"4\.1\.[78]|4\.2\.3", None, V.GAVE_UP, "our sender or the size"),
    _rule(S.RAN_OUT, None, None, _OUR_SENDER, V.GAVE_UP, "our sender or host, in words"),
    _rule(S.RAN_OUT, r"4\d\d", r"4\.[12]\.\d+", None, V.READER, "the address or mailbox, for days"),
    _rule(S.RAN_OUT, r"4\d\d", None, _OUR_SENDING, V.GAVE_UP, "our rate or quota, in words"),
    _rule(S.RAN_OUT, r"4\d\d", None, _MAILBOX_FULL, V.READER, "a full mailbox, for days"),
    _rule(S.RAN_OUT, None, None, None, V.GAVE_UP, "the relay or the line, not the reader"),
    _rule(S.GREETING, r"5\d\d", None, None, V.STOP, "the relay turns us away or refuses the login"),
    _rule(S.MAIL, r"5\d\d", None, None, V.STOP, "the relay refuses our sender"),
    _rule(_BEFORE_DATA, None, r"5\.7\.[089]", None, V.STOP, "authentication or security"),
    _rule(ANY_STAGE, r"53[05]", "", None, V.STOP, "authentication required or refused"),
    _rule(ANY_STAGE, None, None, _OUR_SENDER, V.STOP, "relaying, our sender or our host"),
    _rule(_DELIVERY, None, r"5\.1\.([1236]|10)", None, V.BOUNCE, "no such address"),
    _rule(_DELIVERY, None, r"5\.1\.[78]", None, V.STOP, "our sender's address is refused"),
    _rule(_DELIVERY, None, r"5\.1\.\d+", None, V.READER, "the recipient's address"),
    _rule(_DELIVERY, None, r"5\.2\.3", None, V.CONTENT, "the message is too long"),
    _rule(_DELIVERY, None, r"5\.2\.\d+", None, V.READER, "the mailbox: disabled, full"),
    _rule(_DELIVERY, None, r"5\.3\.4", None, V.CONTENT, "the message is too big"),
    _rule(_DELIVERY, None, r"5\.3\.\d+", None, V.STOP, "the relay's mail system"),
    _rule(_DELIVERY, None, r"5\.4\.\d+", None, V.READER, "no route to the recipient's domain"),
    _rule(_DELIVERY, None, r"5\.5\.\d+", None, V.STOP, "a protocol error: every message has it"),
    _rule(_DELIVERY, None, r"5\.6\.\d+", None, V.CONTENT, "the message's content or format"),
    _rule(S.RCPT, None, r"5\.7\.\d+", None, V.REFUSED, "a policy about this recipient"),
    _rule(S.DATA, None, r"5\.7\.\d+", None, V.CONTENT, "spam or policy: the message"),
    _rule(_DELIVERY, r"55[013]", "", _NO_SUCH_USER, V.BOUNCE, "no such user, in words"),
    _rule(_DELIVERY, None, "", _TOO_BIG, V.CONTENT, "too big, in words"),
    _rule(S.RCPT, r"5\d\d", "", _POLICY, V.REFUSED, "spam or policy, in words"),
    _rule(S.DATA, r"552", "", None, V.CONTENT, "552 after DATA: too big"),
    _rule(S.RCPT, r"5\d\d", None, None, V.READER, "any other refusal of the recipient"),
    _rule(S.DATA, r"5\d\d", None, None, V.CONTENT, "any other refusal of the message"),
    # a delivery report (a bounce mail; report_verdict): the message's content and our
    # sender count against nobody; a hard bounce bounces the reader at once, a soft one
    # is a point on their bounce score ([bounces] soft_limit)
    _rule(S.REPORT, r"2\d\d", None, None, V.SENT, "a report of a delivery: nothing to do"),
    _rule(S.REPORT, None, r"[45]\.1\.[78]", None, V.STOP, "our sender, in a report: nobody's"),
    _rule(S.REPORT, None, _GONE_STATUS, None, V.BOUNCE, "no such address or domain, or disabled"),
    _rule(S.REPORT, None, r"5\.6\.\d+", None, V.CONTENT, "the message's content: nobody's"),
    _rule(S.REPORT, None, _PASSING, None, V.SOFT, "not yet, full, too large, or blocked"),
    _rule(S.REPORT, r"5\d\d", None, _GONE, V.BOUNCE, "gone, in a report's words"),
    _rule(S.REPORT, None, None, _MAY_PASS, V.SOFT, "full, too big, spam or policy, in words"),
    _rule(S.REPORT, r"5\d\d", r"5\.0\.0|", None, V.BOUNCE, "a permanent failure said no finer"),
    _rule(S.REPORT, None, None, None, V.SOFT, "any other report: a point, not a bounce"),
)


def enhanced_code(reply: str) -> str:
    """The RFC 3463 status code a reply ("554 5.7.1 ...") carries, or ""."""
    found = _ENHANCED.match(reply)
    return found.group(1) if found else ""


def ran_out(reply: str) -> Verdict:
    """What a delivery put off until its retries ran out counts as, from its last reply
    ("452 4.2.2 Mailbox full", or "connection to ... lost: timed out", no code)."""
    code = int(reply[:3]) if reply[:3].isdigit() else 0
    return classify(Stage.RAN_OUT, code, reply)


def same_words(reply: str, address: str) -> str:
    """The reply with what may differ from one reader to the next taken out (any
    address, the reader's name for the mailbox, numbers such as queue ids and times), so
    that refusals of different readers can be compared: the same words for each is the
    same refusal of everyone."""
    code, _, text = reply.partition(" ")
    enhanced = enhanced_code(reply)
    if enhanced and text.startswith(enhanced):
        code, text = f"{code} {enhanced}", text[len(enhanced) :]
    text = _ADDRESS.sub(" ", text)
    local = address.partition("@")[0]
    if local:
        text = re.sub(rf"(?<!\w){re.escape(local)}(?!\w)", " ", text, flags=re.IGNORECASE)
    text = _NUMBERED.sub("#", text)
    return " ".join([code, *text.lower().split()])


_ADDRESS = re.compile(r"[^\s<>\[\]()\"']+@[^\s<>\[\]()\"']+")
_NUMBERED = re.compile(r"[^\s<>\[\]()\"']*\d[^\s<>\[\]()\"']*")


def classify(stage: Stage, code: int, reply: str) -> Verdict:
    """What the reply (code and text, as "554 5.7.1 Message rejected") at this stage
    means. A reply no row covers (a 1xx, a code out of range) is temporary."""
    return _decide(stage, code, enhanced_code(reply), reply)


_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_REPORTED_CODE = re.compile(r"([245]\d\d)(?:[ -]|$)")


def report_verdict(action: str, status: str, diagnostic: str) -> Verdict:
    """What a delivery report says of one recipient, from its action ("failed",
    "delayed"), its RFC 3463 status ("5.1.1", or "") and the remote server's words
    ("smtp; 550 5.1.1 <a@example.org>: User unknown", or ""): SENT (nothing), BOUNCE
    (hard), SOFT, or CONTENT / STOP (the message or our sender: nobody's)."""
    words = diagnostic.strip()
    if ";" in words[:12]:  # the diagnostic's type, "smtp;" or "X-Postfix;"
        words = words.partition(";")[2].strip()
    given = _STATUS.match(status.strip())
    enhanced = given.group(0) if given else enhanced_code(words)
    found = _REPORTED_CODE.match(words)
    if found:
        code = int(found.group(1))
    elif enhanced:
        code = int(enhanced[0]) * 100
    else:
        code = 500 if action == "failed" else 400
    return _decide(Stage.REPORT, code, enhanced, words)


def _decide(stage: Stage, code: int, enhanced: str, reply: str) -> Verdict:
    for rule in RULES:
        if rule.matches(stage, code, enhanced, reply):
            return rule.verdict
    return Verdict.DEFERRED


_REPLY_CODE = re.compile(r"\s*(\d{3}(?:[ -]\d\.\d{1,3}\.\d{1,3})?)")


def redacted_reply(reply: str) -> str:
    """An SMTP reply without its text: the codes say what happened, the text may name
    the reader."""
    code = _REPLY_CODE.match(reply)
    return f"{code[1] if code else ''} (reply erased with the subscriber)".lstrip()
