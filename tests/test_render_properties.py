"""Properties of the rendered exposition: whatever the records hold, it parses back.

Hypothesis builds JobStatus records with arbitrary Unicode names, finite floats of
every size and sign (huge, subnormal, -0.0), missing values and unknown states.
Each exposition, in the text format and in OpenMetrics, must parse with
prometheus_client's parsers to exactly the values and label values of the records.
"""

from __future__ import annotations

from math import isnan

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter import metricdefs as m
from exporter.poller import JobView, View
from exporter.render import render_job
from exporter.server import Exposition
from exporter.snapshot import STATES, UNKNOWN_STATE, FolderStatus, JobStatus, UserStatus

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
DATA_FAMILIES = frozenset(d.name for d in m.JOB_LEVEL + m.USER_LEVEL + m.FOLDER_LEVEL)

Key = tuple[str, frozenset[tuple[str, str]]]

counts = st.one_of(
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 1e308, -1.7976931348623157e308, 999999.9999999, 1e6, 123456789.0]),
)
names = st.text(max_size=30)

folders = st.builds(
    FolderStatus,
    name=names,
    migrated_messages=counts, skipped_messages=counts, failed_messages=counts, remote_messages=counts,
    retry1_messages=counts, retry2_messages=counts, migrated_bytes=counts, next_uid=counts,
    delimiter=st.sampled_from(["", "/", ".", '"', "\\"]),
)
users = st.builds(
    UserStatus,
    user=names,
    state=st.sampled_from(STATES + (UNKNOWN_STATE,)),
    remote_user=names, server=names, method=names, delimiter=st.sampled_from(["", "/", ".", "\n"]),
    migrated_messages=counts, skipped_messages=counts, failed_messages=counts, remote_messages=counts,
    migrated_bytes=counts, critical_errors=counts, folder_count=counts, retry1_messages=counts,
    retry2_messages=counts,
    # The parser keeps folder labels unique within a user, so the records do too.
    folders=st.lists(folders, max_size=4, unique_by=lambda folder: folder.name).map(tuple),
)
job_statuses = st.builds(
    JobStatus,
    job_id=st.text(min_size=1, max_size=20),
    throughput_bytes_per_second=counts,
    users=st.lists(users, max_size=4, unique_by=lambda user: user.user).map(tuple),
)


def total(values) -> float | None:
    result = 0.0
    for value in values:
        if value is None:
            return None
        result += value
    return result


def expected_samples(statuses: list[JobStatus]) -> dict[Key, float]:
    """List every data sample that the metric contract prescribes for these records."""
    expected: dict[Key, float] = {}

    def add(definition: m.MetricDef, value: float | None, **labels: str) -> None:
        if value is not None:
            expected[(definition.name, frozenset(labels.items()))] = value

    for status in statuses:
        job = status.job_id
        add(m.JOB_THROUGHPUT, status.throughput_bytes_per_second, job_id=job)
        for state in STATES + (UNKNOWN_STATE,):
            count = sum(user.state == state for user in status.users)
            if state != UNKNOWN_STATE or count:
                add(m.JOB_USERS, float(count), job_id=job, state=state)
        for definition, attribute in ((m.JOB_MIGRATED, "migrated_messages"), (m.JOB_SKIPPED, "skipped_messages"),
                                      (m.JOB_FAILED, "failed_messages"), (m.JOB_REMOTE, "remote_messages"),
                                      (m.JOB_BYTES, "migrated_bytes"), (m.JOB_CRITICAL, "critical_errors")):
            add(definition, total(getattr(user, attribute) for user in status.users), job_id=job)

        for user in status.users:
            labels = {"job_id": job, "user": user.user}
            for state in STATES + (UNKNOWN_STATE,):
                if state != UNKNOWN_STATE or user.state == UNKNOWN_STATE:
                    add(m.USER_STATE, 1.0 if user.state == state else 0.0, state=state, **labels)
            add(m.USER_INFO, 1.0, remote_user=user.remote_user, server=user.server, method=user.method,
                delimiter=user.delimiter, **labels)
            add(m.USER_MIGRATED, user.migrated_messages, **labels)
            add(m.USER_SKIPPED, user.skipped_messages, **labels)
            add(m.USER_FAILED, user.failed_messages, **labels)
            add(m.USER_REMOTE, user.remote_messages, **labels)
            add(m.USER_BYTES, user.migrated_bytes, **labels)
            add(m.USER_CRITICAL, user.critical_errors, **labels)
            add(m.USER_FOLDERS, user.folder_count, **labels)
            add(m.USER_RETRY_PENDING, user.retry1_messages, attempt="1", **labels)
            add(m.USER_RETRY_PENDING, user.retry2_messages, attempt="2", **labels)

            for folder in user.folders:
                folder_labels = {**labels, "folder": folder.name}
                add(m.FOLDER_MIGRATED, folder.migrated_messages, **folder_labels)
                add(m.FOLDER_SKIPPED, folder.skipped_messages, **folder_labels)
                add(m.FOLDER_FAILED, folder.failed_messages, **folder_labels)
                add(m.FOLDER_REMOTE, folder.remote_messages, **folder_labels)
                add(m.FOLDER_RETRY_PENDING, folder.retry1_messages, attempt="1", **folder_labels)
                add(m.FOLDER_RETRY_PENDING, folder.retry2_messages, attempt="2", **folder_labels)
                add(m.FOLDER_BYTES, folder.migrated_bytes, **folder_labels)
                add(m.FOLDER_NEXT_UID, folder.next_uid, **folder_labels)
    return expected


def exposition_of(statuses: list[JobStatus], prerendered: bool) -> Exposition:
    jobs = tuple(
        JobView(status.job_id, status=status, polled=True, up=True,
                rendered=render_job(status) if prerendered else None)
        for status in sorted(statuses, key=lambda status: status.job_id)
    )
    view = View(version=1, jobs=jobs, api_errors={}, ready=True)
    return Exposition(lambda: view)


def parsed_samples(families) -> dict[Key, float]:
    parsed: dict[Key, float] = {}
    for family in families:
        for sample in family.samples:
            if sample.name not in DATA_FAMILIES:
                continue
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in parsed, f"series {key} appears twice"
            parsed[key] = sample.value
    return parsed


def assert_same_samples(parsed: dict[Key, float], expected: dict[Key, float]) -> None:
    assert set(parsed) == set(expected)
    for key, value in expected.items():
        assert not isnan(parsed[key]), key
        assert parsed[key] == value, key
        # -0.0 == 0.0, so compare the sign too: "-0.0" must survive the round trip.
        assert str(parsed[key]).startswith("-") == str(value).startswith("-"), key


job_lists = st.lists(job_statuses, min_size=1, max_size=3, unique_by=lambda status: status.job_id)
property_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@property_settings
@given(statuses=job_lists, prerendered=st.booleans())
def test_text_format_parses_back(statuses, prerendered):
    chunks, _ = exposition_of(statuses, prerendered).render("text/plain", False)
    text = b"".join(chunks).decode()
    assert_same_samples(parsed_samples(parse_text(text)), expected_samples(statuses))


@property_settings
@given(statuses=job_lists, prerendered=st.booleans())
def test_openmetrics_parses_back(statuses, prerendered):
    chunks, _ = exposition_of(statuses, prerendered).render(OPENMETRICS, False)
    text = b"".join(chunks).decode()
    assert_same_samples(parsed_samples(parse_openmetrics(text)), expected_samples(statuses))
