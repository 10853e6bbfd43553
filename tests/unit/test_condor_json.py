"""`condor_* -json` output to plain values: ads are written by classad2's own JSON unparser
(the format condor_status and condor_q print), read by ads_from_json, and compared with
what classad2 itself evaluates."""

from __future__ import annotations

import json
from typing import Any

import classad2
import pytest

from orchestrator.condor.ads import ads_from_json, read_attrs
from orchestrator.condor.records import AUTOSCALER_JOB_ATTRS, JOB_ATTRS, Job

ADS = [
    '[ClusterId = 7; ProcId = 0; Owner = "ann"; JobStatus = 1; RequestCpus = 2; '
    'RequestMemory = 1024; QDate = 1700000000]',
    # the submit defaults: expressions, over attributes the projection may leave out
    '[ClusterId = 7; ProcId = 1; JobStatus = 1; RequestCpus = 1; '
    'RequestMemory = ifthenelse(MemoryUsage =!= undefined, MemoryUsage, '
    '(ImageSize + 1023) / 1024); ImageSize = 2049]',
    '[clusterid = 8; procid = 2; jobstatus = 2; requestcpus = 1 + 3; '
    'remotehost = "slot1@w/1"; JobBatchName = "/Expr(x)"; RequestGpus = undefined]',
    '[ClusterId = 9; ProcId = 0; JobStatus = 5; HoldReason = "a \\"quoted\\" / path\\n"; '
    'RequestCpus = 1.5; RequestMemory = true]',
]


def _json(ads: list[str]) -> str:
    return "[\n" + ",\n".join(classad2.ClassAd(a).printJson() for a in ads) + "\n]\n"


def _reference(ad_text: str, attrs: tuple[str, ...]) -> dict[str, Any]:
    ad = classad2.ClassAd(ad_text)
    out = {}
    for key in attrs:
        if key in ad:
            value = ad.eval(key)
            out[key] = None if isinstance(value, classad2.Value) else value
    return out


def test_values_match_classad2_evaluation() -> None:
    got = ads_from_json(_json(ADS), JOB_ATTRS)
    assert got == [_reference(a, JOB_ATTRS) for a in ADS]
    assert got[1]["RequestMemory"] == 3  # evaluated in the ad: (2049 + 1023) / 1024
    assert got[2]["RequestCpus"] == 4 and got[2]["JobBatchName"] == "/Expr(x)"
    jobs = [Job.from_ad(ad) for ad in got]
    assert [j.request_cpus for j in jobs] == [2, 1, 4, 1]
    assert [j.request_memory_mb for j in jobs] == [1024, 3, 0, 0]


def test_expression_left_undefined_by_the_projection() -> None:
    text = _json(['[RequestMemory = ifthenelse(MemoryUsage =!= undefined, MemoryUsage, '
                  '(ImageSize + 1023) / 1024); RequestCpus = 2]'])
    assert ads_from_json(text, ["RequestMemory", "RequestCpus"]) == [
        {"RequestMemory": None, "RequestCpus": 2}]


@pytest.mark.parametrize("value", [0, -3, 2**40, 1.25, True, False, None, "", "x/y",
                                   "/Expr(", "ünï", "a\\b\"c"])
def test_literals_read_as_classad2_reads_them(value: Any) -> None:
    text = json.dumps([{"Name": value, "other": [1, {"x": 2}]}])
    ad = classad2.parseOne(json.dumps({"Name": value}, ensure_ascii=False),
                           classad2.ParserType.JSON)
    want = ad.eval("Name")
    assert ads_from_json(text, ["Name"]) == [
        {"Name": None if isinstance(want, classad2.Value) else want}]


def test_lists_and_nested_ads_go_through_classad2() -> None:
    text = json.dumps([{"L": [1, "a/b"], "N": {"k": 1}, "S": "ünï"}])
    [got] = ads_from_json(text, ["L", "N", "S"])
    assert got["L"] == [1, "a/b"] and isinstance(got["N"], classad2.ClassAd)
    assert got["S"] == "ünï"



def test_queues_of_several_schedds_are_read_one_after_another() -> None:
    cm = '[ClusterId = 7; ProcId = 0; JobStatus = 1]'
    ap = '[ClusterId = 7; ProcId = 0; JobStatus = 2]'
    ads = ads_from_json(_json([cm]) + _json([ap]) + "\n", JOB_ATTRS)
    assert [a["JobStatus"] for a in ads] == [1, 2]
    with pytest.raises(Exception, match="cannot parse"):
        ads_from_json(_json([cm]) + "-- Failed to fetch ads", JOB_ATTRS)


def test_groups_of_a_grouped_query_carry_their_job_count() -> None:
    """What `condor_q -group-by -json` prints: one ad per distinct projection with JobCount,
    and the attributes an expression among them refers to (ImageSize here)."""
    groups = ['[ClusterId = 3; Id = 1; JobCount = 4; JobIds = "3.0 ... 3.3"; JobStatus = 1; '
              'RequestCpus = 1; ImageSize = 45; RequestMemory = ifthenelse(MemoryUsage isnt '
              'undefined, MemoryUsage, (ImageSize + 1023) / 1024)]',
              '[ClusterId = 2; Id = 2; JobCount = 1; JobIds = "2.0"; JobStatus = 2; '
              'RequestCpus = 2; RequestMemory = 1024; RemoteHost = "slot1_1@w1"]']
    attrs = read_attrs(AUTOSCALER_JOB_ATTRS, grouped=True)
    jobs = [Job.from_ad(ad) for ad in ads_from_json(_json(groups), attrs)]
    assert [(j.cluster, j.count, j.request_memory_mb, j.remote_host) for j in jobs] == [
        (3, 4, 1, None), (2, 1, 1024, "slot1_1@w1")]
    per_job = [Job.from_ad(ad) for ad in ads_from_json(_json(ADS), JOB_ATTRS)]
    assert {j.count for j in per_job} == {1}
