"""What a cluster costs: the hourly price before launching, and what it cost so far at the end.

Prices come from the AWS Pricing API when it can be asked (``pricing`` client in us-east-1,
GetProducts for the instance type in the region, Linux, shared tenancy, no pre-installed software,
capacity status Used), else from the table shipped in ``swiftrun/data/prices.json`` (on-demand
Linux prices of common types in us-east-1 / us-west-2, with the date they were taken). Every
figure says where it came from. Spot prices are the EC2 spot price history when the API is used,
otherwise an estimate: the table's on-demand price times ``spot_ratio`` (~0.35).

When the API is asked (``pricing_mode``):

- ``SWIFTRUN_OFFLINE_PRICES=1`` or ``SWIFTRUN_PRICING=table``: never (tests and offline CI set it);
- ``SWIFTRUN_PRICING=api``: always (with the same short timeout);
- otherwise: yes, unless this looks like a test (``PYTEST_CURRENT_TEST``) or AWS calls go to
  another endpoint (``AWS_ENDPOINT_URL``: a local stand-in has no price list).

Calls are bounded (3 s for all of them together, one attempt, no retries) so a blocked network
never holds up a run or CI; answers are cached for a week (spot: an hour) under the state dir.
``plan`` / ``--dry-run`` are offline and use the table only.

Nothing here imports boto3 at module level.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

TABLE_FILE = Path(__file__).resolve().parent.parent / "data" / "prices.json"   # swiftrun/data/
API_TIMEOUT = 3.0
CACHE_TTL = 7 * 86400
SPOT_CACHE_TTL = 3600
MIN_BILLED_SECONDS = 60   # EC2 Linux: per-second billing, one minute minimum per start

SRC_API = "aws-pricing-api"
SRC_SPOT_API = "ec2-spot-price-history"
SRC_TABLE = "table"
SRC_UNKNOWN = "unknown"

# The Pricing API's "location" attribute for each region.
LOCATIONS = {
    "us-east-1": "US East (N. Virginia)", "us-east-2": "US East (Ohio)",
    "us-west-1": "US West (N. California)", "us-west-2": "US West (Oregon)",
    "ca-central-1": "Canada (Central)", "sa-east-1": "South America (Sao Paulo)",
    "eu-west-1": "EU (Ireland)", "eu-west-2": "EU (London)", "eu-west-3": "EU (Paris)",
    "eu-central-1": "EU (Frankfurt)", "eu-north-1": "EU (Stockholm)", "eu-south-1": "EU (Milan)",
    "ap-northeast-1": "Asia Pacific (Tokyo)", "ap-northeast-2": "Asia Pacific (Seoul)",
    "ap-northeast-3": "Asia Pacific (Osaka)", "ap-southeast-1": "Asia Pacific (Singapore)",
    "ap-southeast-2": "Asia Pacific (Sydney)", "ap-south-1": "Asia Pacific (Mumbai)",
}


@dataclass(frozen=True)
class Price:
    """USD per hour of one instance type (None: unknown) and where that figure came from."""

    usd: float | None
    source: str              # SRC_API | SRC_SPOT_API | SRC_TABLE | SRC_UNKNOWN
    label: str               # for people: "AWS Pricing API", "price table of 2025-06", ...
    estimate: bool = False   # a spot price derived from the on-demand price by a ratio


# -- the shipped table ---------------------------------------------------------------------------
_TABLE: dict | None = None


def table() -> dict:
    global _TABLE
    if _TABLE is None:
        _TABLE = json.loads(TABLE_FILE.read_text())
    return _TABLE


def table_price(instance_type: str, region: str, *, spot: bool = False) -> Price:
    """The shipped table's price (spot: ``spot_ratio`` x on-demand, marked as an estimate)."""
    t = table()
    usd = t.get("overrides", {}).get(region, {}).get(instance_type)
    if usd is None:
        usd = t["on_demand"].get(instance_type)
    if usd is None:
        return Price(None, SRC_UNKNOWN, f"{instance_type} not in swiftrun's price table of {t['date']}")
    label = f"price table of {t['date']}"
    if region not in t["regions"] and region not in t.get("overrides", {}):
        label += f" for {'/'.join(t['regions'])}; {region} may differ"
    if spot:
        return Price(round(usd * t["spot_ratio"], 5), SRC_TABLE, label, estimate=True)
    return Price(usd, SRC_TABLE, label)


# -- when to ask the API -------------------------------------------------------------------------
def pricing_mode(environ=None) -> tuple[str, str]:
    """("api" | "table", why)."""
    from swiftrun import environ as variables

    env = os.environ if environ is None else environ
    if variables.flag("SWIFTRUN_OFFLINE_PRICES", env):
        return "table", "SWIFTRUN_OFFLINE_PRICES is set"
    choice = variables.choice("SWIFTRUN_PRICING", env)
    if choice in ("table", "offline", "off", "0", "no"):
        return "table", f"SWIFTRUN_PRICING={choice}"
    if choice == "api":
        return "api", "SWIFTRUN_PRICING=api"
    if env.get("PYTEST_CURRENT_TEST"):
        return "table", "running under tests"
    if env.get("AWS_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL_PRICING"):
        return "table", "AWS_ENDPOINT_URL points elsewhere"
    return "api", "default"


# -- the book: prices for one region, API first when allowed, table otherwise ---------------------
class PriceBook:
    def __init__(self, region: str, *, project=None, use_api: bool | None = None,
                 timeout: float = API_TIMEOUT, cache_file: Path | None = None):
        self.region = region
        self.project = project
        if use_api is None:
            use_api = pricing_mode()[0] == "api"
        self.use_api = use_api and project is not None
        self.timeout = timeout
        self._cache_file = cache_file
        self._prices: dict[tuple[str, bool], Price] = {}
        self._lock = threading.Lock()
        self.api_error = ""        # why the API was not used, when it was tried and failed

    # public
    def price(self, instance_type: str, *, spot: bool = False) -> Price:
        key = (instance_type, bool(spot))
        if key not in self._prices:
            self.prefetch([key])
        return self._prices[key]

    def prefetch(self, keys) -> None:
        """Price every (type, spot) pair, asking the API for all of them at once (bounded)."""
        todo = [k for k in dict.fromkeys((t, bool(s)) for t, s in keys) if k not in self._prices]
        if not todo:
            return
        got: dict[tuple[str, bool], Price] = {}
        if self.use_api and not self.api_error:
            got = self._from_api(todo)
        for key in todo:
            self._prices[key] = got.get(key) or table_price(key[0], self.region, spot=key[1])

    # API, with a disk cache
    def _cache_path(self) -> Path:
        if self._cache_file is None:
            from swiftrun.paths import state_home

            self._cache_file = state_home() / "cache" / "prices.json"
        return self._cache_file

    def _load_cache(self) -> dict:
        try:
            return json.loads(self._cache_path().read_text())
        except (OSError, ValueError):
            return {}

    def _save_cache(self, cache: dict) -> None:
        path = self._cache_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(cache, indent=0, sort_keys=True))
            tmp.replace(path)
        except OSError:
            pass

    def _from_api(self, keys) -> dict:
        now = time.time()
        cache = self._load_cache()
        out: dict[tuple[str, bool], Price] = {}
        missing = []
        for itype, spot in keys:
            hit = cache.get(_cache_key(self.region, itype, spot))
            ttl = SPOT_CACHE_TTL if spot else CACHE_TTL
            if hit and now - hit.get("at", 0) < ttl and hit.get("usd"):
                out[(itype, spot)] = _api_price(hit["usd"], spot, cached=True)
            else:
                missing.append((itype, spot))
        if not missing:
            return out
        try:
            from swiftrun.cloud.ec2 import make_session

            session = make_session(self.project)
        except Exception as exc:  # noqa: BLE001 - no credentials, no boto3: the table answers
            self.api_error = f"no AWS session for the Pricing API ({exc})"
            return out
        results: dict[tuple[str, bool], float] = {}
        errors: list[str] = []

        def ask(key):
            try:
                usd = (_spot_from_api(session, self.region, key[0], self.timeout) if key[1]
                       else _on_demand_from_api(session, self.region, key[0], self.timeout))
                if usd:
                    with self._lock:
                        results[key] = usd
            except Exception as exc:  # noqa: BLE001 - any failure means: use the table
                with self._lock:
                    errors.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=ask, args=(k,), daemon=True) for k in missing]
        for th in threads:
            th.start()
        deadline = time.monotonic() + self.timeout + 0.5
        for th in threads:
            th.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            if errors:
                self.api_error = errors[0]
            elif any(th.is_alive() for th in threads):
                self.api_error = f"the Pricing API did not answer within {self.timeout:g}s"
            for key, usd in results.items():
                cache[_cache_key(self.region, *key)] = {"usd": usd, "at": now}
                out[key] = _api_price(usd, key[1])
        if results:
            self._save_cache(cache)
        return out


def _cache_key(region: str, itype: str, spot: bool) -> str:
    return f"{region}/{itype}/{'spot' if spot else 'on-demand'}"


def _api_price(usd: float, spot: bool, cached: bool = False) -> Price:
    when = " (cached)" if cached else ""
    if spot:
        return Price(usd, SRC_SPOT_API, f"EC2 spot price history{when}")
    return Price(usd, SRC_API, f"AWS Pricing API{when}")


def _client_config(timeout: float):
    from botocore.config import Config

    return Config(connect_timeout=timeout, read_timeout=timeout,
                  retries={"total_max_attempts": 1}, user_agent_extra="swiftrun")


def pricing_filters(instance_type: str, region: str) -> list[dict]:
    where = ({"Type": "TERM_MATCH", "Field": "location", "Value": LOCATIONS[region]}
             if region in LOCATIONS else
             {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region})
    return [{"Type": "TERM_MATCH", "Field": "instanceType", "Value": instance_type}, where,
            {"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"},
            {"Type": "TERM_MATCH", "Field": "tenancy", "Value": "Shared"},
            {"Type": "TERM_MATCH", "Field": "preInstalledSw", "Value": "NA"},
            {"Type": "TERM_MATCH", "Field": "capacitystatus", "Value": "Used"}]


def parse_price_list(items) -> float | None:
    """The hourly on-demand USD price from GetProducts' PriceList (JSON strings)."""
    for item in items:
        product = json.loads(item) if isinstance(item, str) else item
        for term in product.get("terms", {}).get("OnDemand", {}).values():
            for dim in term.get("priceDimensions", {}).values():
                usd = dim.get("pricePerUnit", {}).get("USD")
                if usd and float(usd) > 0 and dim.get("unit", "Hrs") in ("Hrs", "Hours"):
                    return float(usd)
    return None


def _on_demand_from_api(session, region: str, instance_type: str, timeout: float) -> float | None:
    client = session.client("pricing", region_name="us-east-1", config=_client_config(timeout))
    reply = client.get_products(ServiceCode="AmazonEC2", MaxResults=10,
                                Filters=pricing_filters(instance_type, region))
    return parse_price_list(reply.get("PriceList", []))


def _spot_from_api(session, region: str, instance_type: str, timeout: float) -> float | None:
    client = session.client("ec2", region_name=region, config=_client_config(timeout))
    reply = client.describe_spot_price_history(
        InstanceTypes=[instance_type], ProductDescriptions=["Linux/UNIX"],
        StartTime=datetime.now(timezone.utc), MaxResults=20)
    prices = sorted(float(p["SpotPrice"]) for p in reply.get("SpotPriceHistory", []))
    return prices[len(prices) // 2] if prices else None   # the median zone


# -- documents -----------------------------------------------------------------------------------
def _sources(prices) -> tuple[str, list[str]]:
    labels = list(dict.fromkeys(p.label for p in prices))
    return "; ".join(labels), sorted({p.source for p in prices})


def cluster_estimate(project, *, book: PriceBook | None = None, offline: bool = False) -> dict:
    """The hourly price of what the project runs: 1 headnode + N workers (spot if asked)."""
    if project.cluster.provider != "ec2":
        return {"currency": "USD", "per_hour": None, "items": [], "sources": [],
                "source": "static hosts: not billed through swiftrun", "estimate": False,
                "unknown": []}
    e = project.ec2
    book = book or PriceBook(e.region, project=project, use_api=False if offline else None)
    wanted = [("headnode", 1, e.headnode_type, False),
              ("worker", project.cluster.workers, e.worker_type, bool(e.spot))]
    book.prefetch([(t, s) for _, n, t, s in wanted if n])
    items = []
    for role, count, itype, spot in wanted:
        if not count:
            continue
        p = book.price(itype, spot=spot)
        items.append({"role": role, "count": count, "type": itype, "spot": spot,
                      "usd_per_hour": p.usd, "source": p.source, "label": p.label,
                      "estimate": p.estimate})
    doc = _rate_doc(items, [book.price(i["type"], spot=i["spot"]) for i in items], book)
    from swiftrun.node.network import PUBLIC_IPV4_USD_PER_HOUR, public_addresses

    # AWS bills each public IPv4 address by the hour: the headnode's, and the workers' if any
    ips = public_addresses(project)
    doc["public_ipv4"] = {"count": ips, "usd_per_hour": PUBLIC_IPV4_USD_PER_HOUR}
    for key in ("per_hour", "known_per_hour"):
        if doc.get(key) is not None:
            doc[key] = round(doc[key] + ips * PUBLIC_IPV4_USD_PER_HOUR, 5)
    return doc


def _rate_doc(items: list[dict], prices: list[Price], book: PriceBook) -> dict:
    unknown = sorted({i["type"] for i in items if i["usd_per_hour"] is None})
    known = sum(i["usd_per_hour"] * i["count"] for i in items if i["usd_per_hour"] is not None)
    source, sources = _sources(prices)
    doc = {"currency": "USD", "region": book.region,
           "per_hour": None if unknown else round(known, 5),
           "items": items, "source": source, "sources": sources,
           "estimate": any(p.estimate for p in prices), "unknown": unknown}
    if unknown and items:
        doc["known_per_hour"] = round(known, 5)
    if book.api_error:
        doc["api_error"] = book.api_error
    return doc


def running_cost(nodes, region: str, *, project=None, book: PriceBook | None = None,
                 now: datetime | None = None, live_only: bool = True) -> dict:
    """What the given nodes cost per hour now and cost so far (LaunchTime to ``now``)."""
    from swiftrun.cloud.base import LIVE_STATES

    book = book or PriceBook(region, project=project)
    now = now or datetime.now(timezone.utc)
    nodes = [n for n in nodes if n.launched and (not live_only or n.state in LIVE_STATES)]
    book.prefetch([(n.type, n.spot) for n in nodes])
    per_node, prices = [], []
    so_far, rate, unknown = 0.0, 0.0, set()
    for n in nodes:
        p = book.price(n.type, spot=n.spot)
        prices.append(p)
        launched = n.launched if n.launched.tzinfo else n.launched.replace(tzinfo=timezone.utc)
        up = max(0.0, (now - launched).total_seconds())
        secs = max(MIN_BILLED_SECONDS, up)
        usd = None if p.usd is None else p.usd * secs / 3600
        if usd is None:
            unknown.add(n.type)
        else:
            so_far += usd
            rate += p.usd
        per_node.append({"id": n.id, "role": n.role, "type": n.type, "spot": n.spot,
                         "hours": round(up / 3600, 4), "billed_hours": round(secs / 3600, 4),
                         "usd_per_hour": p.usd,
                         "usd": None if usd is None else round(usd, 6), "source": p.source})
    # AWS bills each public IPv4 address by the hour, as long as the instance holds it
    from swiftrun.node.network import PUBLIC_IPV4_USD_PER_HOUR

    public = [n for n in nodes if getattr(n, "public_ip", None)]
    rate += len(public) * PUBLIC_IPV4_USD_PER_HOUR
    for n in public:
        launched = n.launched if n.launched.tzinfo else n.launched.replace(tzinfo=timezone.utc)
        secs = max(MIN_BILLED_SECONDS, (now - launched).total_seconds())
        so_far += PUBLIC_IPV4_USD_PER_HOUR * secs / 3600
    source, sources = _sources(prices)
    doc = {"currency": "USD", "region": region,
           "per_hour": None if unknown else round(rate, 5),
           "so_far": None if unknown else round(so_far, 6),
           "nodes": per_node, "source": source or "no running nodes", "sources": sources,
           "estimate": any(p.estimate for p in prices), "unknown": sorted(unknown),
           "billing": "per second, 60 s minimum per instance start; EBS and traffic not included"}
    if public:
        doc["public_ipv4"] = {"count": len(public), "usd_per_hour": PUBLIC_IPV4_USD_PER_HOUR}
    if unknown:
        doc["known_so_far"] = round(so_far, 5)
    if book.api_error:
        doc["api_error"] = book.api_error
    return doc


# -- words ---------------------------------------------------------------------------------------
def usd(x: float | None) -> str:
    if x is None:
        return "price unknown"
    if x == 0:
        return "$0"
    return f"${x:.4f}" if x < 1 else f"${x:,.2f}"


def describe_estimate(doc: dict) -> str:
    """``~$0.1908/h: 1 x t3.small $0.0208/h + 2 x c5.large $0.0850/h (price table of 2025-06)``."""
    if not doc.get("items"):
        return doc.get("source", "no cost figures")
    parts = []
    for i in doc["items"]:
        kind = " spot" if i["spot"] else ""
        each = f"{usd(i['usd_per_hour'])}/h" if i["usd_per_hour"] is not None else "price unknown"
        parts.append(f"{i['count']} x {i['type']}{kind} {each}")
    total = (f"~{usd(doc['per_hour'])}/h" if doc["per_hour"] is not None else
             f"price unknown ({', '.join(doc['unknown'])} not priced; the rest "
             f"~{usd(doc.get('known_per_hour', 0))}/h)")
    ips = doc.get("public_ipv4")
    if ips and ips.get("count"):
        parts.append(f"{ips['count']} x public IPv4 {usd(ips['usd_per_hour'])}/h")
    text = f"{total}: {' + '.join(parts)} (Linux, {doc.get('region', '')}; {doc['source']})"
    if doc.get("estimate"):
        text += f"; spot estimated at {table()['spot_ratio']:g} x on-demand"
    if doc.get("api_error"):
        text += f"; Pricing API not used: {doc['api_error']}"
    return text


def describe_running(doc: dict, *, verb: str = "have cost") -> str:
    if not doc.get("nodes"):
        return "no running nodes: nothing is being billed for instances"
    n = len(doc["nodes"])
    hours = max((x["hours"] for x in doc["nodes"]), default=0)
    if doc["so_far"] is None:
        return (f"cost unknown: no price for {', '.join(doc['unknown'])} "
                f"(the other nodes ~{usd(doc.get('known_so_far', 0))}; {doc['source']})")
    minimum = (", billed 1 min at least" if hours * 3600 < MIN_BILLED_SECONDS else "")
    text = (f"{n} node(s) {verb} ~{usd(doc['so_far'])} so far (up {_hours(hours)}{minimum}; "
            f"~{usd(doc['per_hour'])}/h while running; {doc['source']})")
    if doc.get("estimate"):
        text += f"; spot estimated at {table()['spot_ratio']:g} x on-demand"
    return text


def _hours(h: float) -> str:
    secs = int(h * 3600)
    hh, rem = divmod(secs, 3600)
    mm, ss = divmod(rem, 60)
    return f"{hh}h{mm:02d}m" if hh else (f"{mm}m{ss:02d}s" if mm else f"{ss}s")


def as_dict(price: Price) -> dict:
    return asdict(price)
