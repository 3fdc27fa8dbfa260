"""CSV rendering of the reports, for Excel in the UK: UTF-8 with a byte-order mark (without it Excel
reads UTF-8 as Windows-1252 and mangles accented names), dates dd/mm/yyyy and times in UK local time,
durations in whole seconds and rates as fractions (Excel formats them). Rendered row by row, so that
the API can stream a long export."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from dialler.reports.periods import Period, uk_date, uk_time
from dialler.reports.queries import AgentRow, ComplianceReport, DepthSample, HourRow, MessagingReport, QueueReport

BOM = "\ufeff"
Cell = str | int | float | None


def lines(header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> Iterator[str]:
    """The BOM and header, then one CSV line per row (CRLF, as Excel writes them)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    yield BOM + buffer.getvalue()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(["" if cell is None else cell for cell in row])
        yield buffer.getvalue()


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _when(at: datetime, period: Period) -> str:
    return uk_time(at, period.tz)


def agents_csv(period: Period, rows: list[AgentRow]) -> Iterator[str]:
    header = [
        "From", "To", "Agent ID", "Agent", "Logged in (s)", "Available (s)", "Reserved (s)", "On call (s)",
        "Wrap-up (s)", "Break (s)", "Breaks by reason", "Calls", "Contacts", "Calls per hour", "Outcomes",
    ]  # fmt: skip
    first, last = period.first_day.strftime("%d/%m/%Y"), period.last_day.strftime("%d/%m/%Y")
    return lines(
        header,
        (
            [
                first,
                last,
                r.agent_id,
                r.display_name,
                r.logged_in_s,
                r.available_s,
                r.reserved_s,
                r.on_call_s,
                r.wrap_up_s,
                r.break_s,
                "; ".join(f"{k}={v}" for k, v in r.break_by_reason.items()),
                r.calls,
                r.contacts,
                "" if r.calls_per_hour is None else r.calls_per_hour,
                "; ".join(f"{k}={v}" for k, v in r.outcomes.items()),
            ]  # fmt: skip
            for r in rows
        ),
    )


def queues_csv(period: Period, report: QueueReport) -> Iterator[str]:
    header = [
        "From", "To", "Queue", "Attempts", "Outcomes", "Contacts", "Contact rate", "Customers called",
        f"Signatures within {report.conversion_days} days", f"Documents within {report.conversion_days} days",
        "Conversion rate",
    ]  # fmt: skip
    first, last = period.first_day.strftime("%d/%m/%Y"), period.last_day.strftime("%d/%m/%Y")
    cb = report.callbacks
    rows: list[list[Cell]] = [
        [
            first,
            last,
            q.queue,
            q.attempts,
            q.outcomes,
            q.contacts,
            _pct(q.contact_rate),
            q.customers_called,
            q.signatures,
            q.documents,
            _pct(q.conversion_rate),
        ]  # fmt: skip
        for q in report.queues
    ]
    rows.append([])
    rows.append(["Callbacks due", "Kept", "Missed", "Rebooked", "Cancelled"])
    rows.append([cb.due, cb.kept, cb.missed, cb.rebooked, cb.cancelled])
    if report.waiting:
        rows.append([])
        rows.append(["Hour (UK)", "Queue", "Average waiting", "Peak waiting"])
        rows += [[_when(p.hour, period), p.queue, p.average, p.peak] for p in report.waiting]
    return lines(header, rows)


def compliance_csv(period: Period, report: ComplianceReport) -> Iterator[str]:
    header = [
        "Hour (UK)", "Queue", "Answered", "Abandoned", "Answered (24 h)", "Abandoned (24 h)", "Abandoned rate (24 h)",
        f"Over target ({report.target:.0%})", f"Over Ofcom ceiling ({report.ceiling:.0%})",
    ]  # fmt: skip
    rows: list[list[Cell]] = [
        [
            _when(h.hour, period),
            h.queue,
            h.answered,
            h.abandoned,
            h.answered_24h,
            h.abandoned_24h,
            _pct(h.rate_24h),
            "yes" if h.over_target else "no",
            "yes" if h.over_ceiling else "no",
        ]  # fmt: skip
        for h in report.hours
    ]
    rows.append([])
    rows.append(["Refused dials: path", "Reason", "Refused"])
    rows += [[r.path, r.reason, r.refused] for r in report.refusals]
    return lines(header, rows)


def messaging_csv(period: Period, report: MessagingReport) -> Iterator[str]:
    header = [
        "From", "To", "Texts sent", "Delivered", "Failed", "Received", "STOPs", "Links sent", "Links opened",
        "Links completed",
    ]  # fmt: skip
    return lines(
        header,
        [
            [
                period.first_day.strftime("%d/%m/%Y"),
                period.last_day.strftime("%d/%m/%Y"),
                report.texts_sent,
                report.texts_delivered,
                report.texts_failed,
                report.texts_received,
                report.stops,
                report.links_sent,
                report.links_opened,
                report.links_completed,
            ]  # fmt: skip
        ],
    )


def hourly_csv(period: Period, rows: list[HourRow]) -> Iterator[str]:
    return lines(
        ["Date", "Hour (UK)", "Calls", "Contacts"],
        ([uk_date(r.hour, period.tz), _when(r.hour, period), r.calls, r.contacts] for r in rows),
    )


def depth_csv(period: Period, samples: list[DepthSample]) -> Iterator[str]:
    return lines(
        ["Date", "Time (UK)", "Queue", "Customers waiting"],
        ([uk_date(s.at, period.tz), _when(s.at, period), s.queue, s.depth] for s in samples),
    )
