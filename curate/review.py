"""The PII review queue: a person approves, edits or rejects what the detector did.

A decision's text is always rebuilt from its original (`previous_text`) and all its findings,
so reviewing findings in any order, or twice, gives the same text, and reverting the run still
puts the original back.
"""

from __future__ import annotations

from corpus.models import Record, Response

from .models import CurationDecision, CurationRun, PIIFinding


class ReviewError(Exception):
    pass


def _effective_replacement(finding: PIIFinding) -> str:
    if finding.review_status == PIIFinding.Review.REJECTED:
        return finding.original
    if finding.review_status == PIIFinding.Review.EDITED:
        return finding.replacement
    return finding.original if finding.policy == "flag" else finding.replacement


def rebuild_text(original: str, findings: list[PIIFinding]) -> str:
    out, cursor = [], 0
    for finding in sorted(findings, key=lambda f: f.start):
        if finding.start < cursor:
            continue  # overlaps an earlier span: detection already merged these
        out.append(original[cursor:finding.start])
        out.append(_effective_replacement(finding))
        cursor = finding.end
    out.append(original[cursor:])
    return "".join(out)


def review_finding(finding: PIIFinding, verdict: str, replacement: str | None, user, now
                   ) -> PIIFinding:
    if finding.run.status == CurationRun.Status.REVERTED:
        raise ReviewError("the run that found this was reverted")
    decision = finding.decision
    if decision is None:
        raise ReviewError("this finding has no decision to review")
    finding.review_status = {"approve": PIIFinding.Review.APPROVED,
                             "edit": PIIFinding.Review.EDITED,
                             "reject": PIIFinding.Review.REJECTED}[verdict]
    if verdict == "edit":
        finding.replacement = replacement or ""
    finding.reviewed_by = user
    finding.reviewed_at = now
    finding.save(update_fields=["review_status", "replacement", "reviewed_by", "reviewed_at"])

    item = (Response.objects.select_for_update().get(pk=decision.response_id)
            if decision.response_id else Record.objects.select_for_update().get(pk=decision.record_id))
    field = finding.field
    original = decision.previous_text if decision.previous_text is not None else getattr(item, field)
    text = rebuild_text(original, list(decision.findings.all()))
    if decision.previous_text is None and text != original:
        # A flagged finding edited by hand becomes a redaction that revert can undo.
        decision.previous_text = original
        decision.field = field
        decision.action = CurationDecision.Action.REDACTED
        decision.save(update_fields=["previous_text", "field", "action"])
    setattr(item, field, text)
    item.save(update_fields=[field])
    return finding
