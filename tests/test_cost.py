"""Cost figures: the shipped table, totals, unknown types, the source label, the API path (with
stub clients: no network), the bound on API time, and `plan --json` carrying the estimate."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from swiftrun.cloud import pricing as cost
from swiftrun.cloud.base import Node
from tests.support.cli import swiftrun

IP = 0.005      # one public IPv4 address per hour; these projects' workers have one (stock image)


def project(workers=2, head="t3.small", worker="c5.large", spot=False, region="us-east-1",
            provider="ec2"):
    return SimpleNamespace(
        cluster=SimpleNamespace(provider=provider, workers=workers, name="c"),
        ec2=SimpleNamespace(region=region, headnode_type=head, worker_type=worker, spot=spot,
                            profile="", credentials_file=None))


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("SWIFTRUN_OFFLINE_PRICES", "1")
    monkeypatch.setenv("SWIFTRUN_HOME", str(tmp_path / "home"))


def test_table_lookup_has_date_and_source():
    p = cost.table_price("c5.large", "us-east-1")
    assert p.usd == 0.085 and p.source == cost.SRC_TABLE and not p.estimate
    assert cost.table()["date"] in p.label
    assert cost.table_price("t3.small", "us-west-2").usd == 0.0208
    # every type the defaults and the families the docs name are in it
    for itype in ("t3.micro", "c5.xlarge", "m5.large", "c6i.large", "c7g.large", "r5.large"):
        assert cost.table_price(itype, "us-east-1").usd > 0, itype


def test_spot_is_an_estimate_from_the_ratio():
    p = cost.table_price("c5.large", "us-west-2", spot=True)
    assert p.estimate and p.usd == round(0.085 * cost.table()["spot_ratio"], 5)
    doc = cost.cluster_estimate(project(spot=True), offline=True)
    assert doc["estimate"] is True
    assert "spot estimated at" in cost.describe_estimate(doc)


def test_other_region_says_it_may_differ():
    p = cost.table_price("c5.large", "eu-west-1")
    assert p.usd == 0.085 and "eu-west-1 may differ" in p.label


def test_unknown_type_is_price_unknown():
    p = cost.table_price("zz9.plural", "us-east-1")
    assert p.usd is None and p.source == cost.SRC_UNKNOWN
    doc = cost.cluster_estimate(project(worker="zz9.plural"), offline=True)
    assert doc["per_hour"] is None and doc["unknown"] == ["zz9.plural"]
    assert doc["known_per_hour"] == pytest.approx(0.0208 + 3 * IP)
    assert "price unknown" in cost.describe_estimate(doc)


def test_cluster_total_and_words():
    doc = cost.cluster_estimate(project(workers=3), offline=True)
    assert doc["per_hour"] == pytest.approx(0.0208 + 3 * 0.085 + 4 * IP)
    assert doc["sources"] == ["table"] and "price table of" in doc["source"]
    text = cost.describe_estimate(doc)
    assert "1 x t3.small" in text and "3 x c5.large" in text and "~$0.2958/h" in text
    assert "4 x public IPv4" in text
    none = cost.cluster_estimate(project(workers=0), offline=True)
    assert none["per_hour"] == pytest.approx(0.0208 + IP) and len(none["items"]) == 1
    # workers without a public address ([ec2] worker_public_ip = false) cost none
    private = project(workers=3)
    private.ec2.worker_public_ip = False
    assert cost.cluster_estimate(private, offline=True)["public_ipv4"]["count"] == 1
    static = cost.cluster_estimate(project(provider="static"), offline=True)
    assert static["per_hour"] is None and "static" in static["source"]


def node(i, itype, hours_ago, now, state="running", spot=False, role="worker"):
    return Node(id=f"i-{i}", role=role, state=state, type=itype, spot=spot,
                launched=now - timedelta(hours=hours_ago))


def test_running_cost_from_launch_time():
    now = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    nodes = [node(0, "t3.small", 2, now, role="headnode"), node(1, "c5.large", 2, now),
             node(2, "c5.large", 1, now), node(3, "c5.large", 5, now, state="stopped")]
    doc = cost.running_cost(nodes, "us-east-1", now=now)
    assert doc["so_far"] == pytest.approx(2 * 0.0208 + 2 * 0.085 + 1 * 0.085, abs=1e-4)
    assert doc["per_hour"] == pytest.approx(0.0208 + 2 * 0.085)
    assert [n["id"] for n in doc["nodes"]] == ["i-0", "i-1", "i-2"]   # stopped: no instance hours
    assert "so far" in cost.describe_running(doc)
    # a node up for seconds is billed the one-minute minimum
    fresh = cost.running_cost([node(9, "c5.large", 1 / 3600, now)], "us-east-1", now=now)
    assert fresh["so_far"] == pytest.approx(0.085 / 60, abs=1e-6)
    unknown = cost.running_cost([node(8, "zz9.plural", 1, now)], "us-east-1", now=now)
    assert unknown["so_far"] is None and "cost unknown" in cost.describe_running(unknown)
    assert "nothing" in cost.describe_running(cost.running_cost([], "us-east-1", now=now))


def test_pricing_mode_defaults_never_call_out_in_tests():
    assert cost.pricing_mode({"SWIFTRUN_OFFLINE_PRICES": "1", "SWIFTRUN_PRICING": "api"})[0] == "table"
    assert cost.pricing_mode({"SWIFTRUN_PRICING": "table"})[0] == "table"
    assert cost.pricing_mode({"SWIFTRUN_PRICING": "api"})[0] == "api"
    assert cost.pricing_mode({"PYTEST_CURRENT_TEST": "x"})[0] == "table"
    assert cost.pricing_mode({"AWS_ENDPOINT_URL": "http://127.0.0.1:1"})[0] == "table"
    assert cost.pricing_mode({}) == ("api", "default")


PRICE_ITEM = json.dumps({
    "product": {"attributes": {"instanceType": "c5.large"}},
    "terms": {"OnDemand": {"X.JRTCKXETXF": {"priceDimensions": {"X.JRTCKXETXF.6YS6EN2CT7": {
        "unit": "Hrs", "pricePerUnit": {"USD": "0.0860000000"}}}}}}})


class StubSession:
    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.calls = []

    def client(self, service, region_name=None, config=None):
        session = self

        class Client:
            def get_products(self, **kw):
                session.calls.append((service, region_name, kw))
                return session.behaviour(kw)

            def describe_spot_price_history(self, **kw):
                session.calls.append((service, region_name, kw))
                return {"SpotPriceHistory": [{"SpotPrice": "0.031"}, {"SpotPrice": "0.033"},
                                             {"SpotPrice": "0.040"}]}
        return Client()


def use_stub(monkeypatch, behaviour) -> StubSession:
    import swiftrun.cloud.ec2 as ec2

    stub = StubSession(behaviour)
    monkeypatch.setattr(ec2, "make_session", lambda project: stub)
    return stub


def test_api_price_is_labelled_and_cached(monkeypatch, tmp_path):
    stub = use_stub(monkeypatch, lambda kw: {"PriceList": [PRICE_ITEM]})
    cache = tmp_path / "prices.json"
    book = cost.PriceBook("us-west-2", project=project(), use_api=True, cache_file=cache)
    p = book.price("c5.large")
    assert p.usd == 0.086 and p.source == cost.SRC_API and p.label == "AWS Pricing API"
    service, region, kw = stub.calls[0]
    assert (service, region) == ("pricing", "us-east-1")
    fields = {f["Field"]: f["Value"] for f in kw["Filters"]}
    assert fields == {"instanceType": "c5.large", "location": "US West (Oregon)",
                      "operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA",
                      "capacitystatus": "Used"}
    spot = book.price("c5.large", spot=True)
    assert spot.usd == 0.033 and spot.source == cost.SRC_SPOT_API and not spot.estimate
    # a second book answers from the cache, without a call
    stub.calls.clear()
    again = cost.PriceBook("us-west-2", project=project(), use_api=True, cache_file=cache)
    assert again.price("c5.large").usd == 0.086 and "cached" in again.price("c5.large").label
    assert stub.calls == []


def test_api_failure_falls_back_to_the_table(monkeypatch, tmp_path):
    def refuse(kw):
        raise RuntimeError("AccessDeniedException: not allowed pricing:GetProducts")

    use_stub(monkeypatch, refuse)
    book = cost.PriceBook("us-east-1", project=project(), use_api=True,
                          cache_file=tmp_path / "p.json")
    doc = cost.cluster_estimate(project(), book=book)
    assert doc["per_hour"] == pytest.approx(0.0208 + 2 * 0.085 + 3 * IP)
    assert doc["sources"] == ["table"] and "AccessDenied" in doc["api_error"]
    assert "Pricing API not used" in cost.describe_estimate(doc)


def test_api_that_does_not_answer_is_not_waited_for(monkeypatch, tmp_path):
    release = threading.Event()

    def hang(kw):
        release.wait(30)
        return {"PriceList": [PRICE_ITEM]}

    use_stub(monkeypatch, hang)
    try:
        book = cost.PriceBook("us-east-1", project=project(), use_api=True, timeout=0.2,
                              cache_file=tmp_path / "p.json")
        p = book.price("c5.large")
        assert p.source == cost.SRC_TABLE and "did not answer" in book.api_error
    finally:
        release.set()


def test_parse_price_list_skips_zero_and_non_hourly():
    zero = json.dumps({"terms": {"OnDemand": {"a": {"priceDimensions": {"b": {
        "unit": "Hrs", "pricePerUnit": {"USD": "0.0000000000"}}}}}}})
    assert cost.parse_price_list([zero, PRICE_ITEM]) == 0.086
    assert cost.parse_price_list([]) is None


def test_plan_json_carries_the_estimate(tmp_path):
    proj = tmp_path / "p"
    proj.mkdir()
    (proj / "swiftrun.toml").write_text('[cluster]\nname = "costplan"\nworkers = 4\n\n'
                                        '[ec2]\nregion = "us-west-2"\nworker_type = "m5.large"\n')
    (proj / "a.swift").write_text("trace(1);\n")
    doc = json.loads(swiftrun("plan", "a.swift", "--json", cwd=proj,
                              env={"SWIFTRUN_HOME": str(tmp_path / "h")}).stdout)
    # 5 public IPv4 addresses: stock Ubuntu workers need the internet at boot (apt)
    assert doc["cost"]["per_hour"] == pytest.approx(0.0208 + 4 * 0.096 + 5 * 0.005)
    assert doc["cost"]["public_ipv4"] == {"count": 5, "usd_per_hour": 0.005}
    assert doc["cost"]["sources"] == ["table"]
    text = swiftrun("run", "a.swift", "--dry-run", cwd=proj,
                    env={"SWIFTRUN_HOME": str(tmp_path / "h")}).stdout
    assert "cost:" in text and "4 x m5.large" in text and "price table of" in text
    assert "5 x public IPv4 $0.0050/h" in text
