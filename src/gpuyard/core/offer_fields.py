"""The fields an offer query may filter and sort on, with their types and wire units.

Units are those of Vast's JSON API, which every dialect and the native offers search share:

======================  =======  ==========================================================
field                   type     meaning, unit on the wire
======================  =======  ==========================================================
``id``                  int      offer id
``gpu_name``            str      GPU type; compared by :func:`~gpuyard.core.gpu_names.gpu_key`
``num_gpus``            int      GPUs in the offer
``gpu_ram``             float    VRAM per GPU, MB (the CLI string takes GB and sends x 1000)
``gpu_total_ram``       float    VRAM of all the offer's GPUs, MB (CLI: GB x 1000)
``cpu_ram``             float    system RAM of the offer, MB (CLI: GB x 1000)
``cpu_cores``           int      virtual CPUs
``disk_space``          float    disk, GB
``dph_total``           float    total price, dollars per hour
``reliability``         float    0.0 to 1.0
``inet_up``             float    upload bandwidth, Mbit/s
``inet_down``           float    download bandwidth, Mbit/s
``geolocation``         str      ISO 3166 two-letter country code; a value like
                                 ``"Taiwan, TW"`` is compared by its last part
``cuda_max_good``       float    highest CUDA version the driver supports (``12.4``)
``compute_cap``         int      CUDA compute capability x 100 (``890`` for 8.9)
``verified``            bool     the host is verified
``rentable``            bool     the offer can be rented now
``rented``              bool     the offer is rented
``direct_port_count``   int      ports reachable directly on the host
``host_id``             int      host id
``machine_id``          int      machine id
``dlperf``              float    deep-learning performance score
``score``               float    ranking score (Vast's default order is ``score`` desc)
======================  =======  ==========================================================

Also from the ``vastai`` CLI's field list, so that its queries never fail on a field it knows:

- ``cpu_cores_effective`` (float, the virtual CPUs the offer gets: the same value as
  ``cpu_cores``, which is already the offer's share of the host) and ``verification`` (str,
  ``verified`` or ``unverified``, from ``verified``) are supported;
- fields gpuyard's hosts never report (:data:`UNREPORTED`: ``cpu_ghz``, ``pcie_bw``,
  ``total_flops``, ``datacenter``, ``static_ip``, ``cpu_arch``, ...) are accepted and
  type-checked; their value is always ``None``, so a filter on one matches no offer (as for any
  value a host does not report) and ordering by one changes nothing;
- :data:`TOLERATED_FILTERS` are accepted and ignored: ``external`` (gpuyard has no external
  marketplace), ``duration`` (an offer has no end date, so any minimum holds) and
  ``driver_version`` (the CLI sends it as an integer, ``535.86.05`` → ``535086005``, which the
  offers table cannot compare yet; offers still show the host's driver version).

``cuda_vers``, ``dph``, ``dlperf_usd``, ``flops_usd`` and ``display_active`` are accepted as
aliases of ``cuda_max_good``, ``dph_total``, ``dlperf_per_dphtotal``, ``flops_per_dphtotal`` and
``gpu_display_active``, as the ``vastai`` CLI accepts them. Other string fields compare
case-insensitively.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from gpuyard.core.errors import InvalidRequest
from gpuyard.core.gpu_names import display_name, gpu_key

Scalar = int | float | str | bool
"""A filter value after coercion to its field's type."""

Comparable = float | str
"""A value normalised for comparison: numbers and bools as floats, strings by their key."""


class FieldKind(StrEnum):
    INT = "int"
    FLOAT = "float"
    STR = "str"
    BOOL = "bool"


class Op(StrEnum):
    EQ = "eq"
    NEQ = "neq"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    IN = "in"
    NOTIN = "notin"


ORDERED_OPS = frozenset({Op.GT, Op.GTE, Op.LT, Op.LTE})
LIST_OPS = frozenset({Op.IN, Op.NOTIN})


@dataclass(frozen=True, slots=True)
class OfferField:
    name: str
    kind: FieldKind
    cli_multiplier: float = 1.0
    """The CLI string's value times this is the wire value (GB → MB for the RAM fields)."""
    reported: bool = True
    """False for a field no gpuyard host reports: its value is always None."""

    @property
    def numeric(self) -> bool:
        return self.kind in (FieldKind.INT, FieldKind.FLOAT)


def _fields(*specs: OfferField) -> dict[str, OfferField]:
    return {spec.name: spec for spec in specs}


_I, _F, _S, _B = FieldKind.INT, FieldKind.FLOAT, FieldKind.STR, FieldKind.BOOL

OFFER_FIELDS: Mapping[str, OfferField] = _fields(
    OfferField("id", _I),
    OfferField("gpu_name", _S),
    OfferField("num_gpus", _I),
    OfferField("gpu_ram", _F, cli_multiplier=1000.0),
    OfferField("gpu_total_ram", _F, cli_multiplier=1000.0),
    OfferField("cpu_ram", _F, cli_multiplier=1000.0),
    OfferField("cpu_cores", _I),
    OfferField("disk_space", _F),
    OfferField("dph_total", _F),
    OfferField("reliability", _F),
    OfferField("inet_up", _F),
    OfferField("inet_down", _F),
    OfferField("geolocation", _S),
    OfferField("cuda_max_good", _F),
    OfferField("compute_cap", _I),
    OfferField("verified", _B),
    OfferField("rentable", _B),
    OfferField("rented", _B),
    OfferField("direct_port_count", _I),
    OfferField("host_id", _I),
    OfferField("machine_id", _I),
    OfferField("dlperf", _F),
    OfferField("score", _F),
    OfferField("cpu_cores_effective", _F),
    OfferField("verification", _S),
    *(
        OfferField(name, kind, reported=False)
        for name, kind in (
            ("bw_nvlink", _F),
            ("cluster_id", _I),
            ("cpu_arch", _S),
            ("cpu_ghz", _F),
            ("datacenter", _B),
            ("disk_bw", _F),
            ("dlperf_per_dphtotal", _F),
            ("flops_per_dphtotal", _F),
            ("gpu_arch", _S),
            ("gpu_display_active", _B),
            ("gpu_frac", _F),
            ("gpu_max_power", _F),
            ("gpu_max_temp", _F),
            ("gpu_mem_bw", _F),
            ("has_avx", _B),
            ("inet_down_cost", _F),
            ("inet_up_cost", _F),
            ("min_bid", _F),
            ("mobo_name", _S),
            ("pci_gen", _F),
            ("pcie_bw", _F),
            ("static_ip", _B),
            ("storage_cost", _F),
            ("total_flops", _F),
            ("ubuntu_version", _S),
            ("vms_enabled", _B),
        )
    ),
)

UNREPORTED = frozenset(name for name, spec in OFFER_FIELDS.items() if not spec.reported)
"""Fields of the ``vastai`` CLI's list that no gpuyard host reports (always None)."""

FIELD_ALIASES: Mapping[str, str] = {
    "cuda_vers": "cuda_max_good",
    "dph": "dph_total",
    "dlperf_usd": "dlperf_per_dphtotal",
    "flops_usd": "flops_per_dphtotal",
    "display_active": "gpu_display_active",
}

TOLERATED_FILTERS = frozenset({"external", "duration", "driver_version"})
"""Filter keys the ``vastai`` CLI sends that are accepted and dropped (see the module doc).

``external`` asks for offers of external marketplaces "in addition"; gpuyard has none.
``duration`` is a minimum rental time; gpuyard offers have no end date. ``driver_version``
arrives as an integer the offers table cannot compare yet.
"""


def canonical_field_name(name: str) -> str:
    return FIELD_ALIASES.get(name, name)


def resolve_field(name: str) -> OfferField:
    """The catalogue entry for ``name`` (an alias is resolved); unknown is an InvalidRequest."""
    spec = OFFER_FIELDS.get(canonical_field_name(name))
    if spec is None:
        known = ", ".join(sorted(OFFER_FIELDS))
        raise InvalidRequest(f"unknown offer field {name!r}; known fields: {known}", param=name)
    return spec


def coerce_value(spec: OfferField, value: object, *, param: str | None = None) -> Scalar:
    """Check ``value`` against the field's type and convert it (``"2"`` → ``2`` for an int).

    Strings are accepted for every type because the CLI string syntax and query strings send
    numbers and booleans as text. ``gpu_name`` values become their canonical display name.
    """
    where = param or spec.name
    match spec.kind:
        case FieldKind.INT:
            number = _number(value, where)
            if not number.is_integer():
                raise InvalidRequest(f"{where} must be an integer, got {value!r}", param=where)
            return int(number)
        case FieldKind.FLOAT:
            return _number(value, where)
        case FieldKind.BOOL:
            return _boolean(value, where)
        case FieldKind.STR:
            if not isinstance(value, str) or not value.strip():
                raise InvalidRequest(
                    f"{where} must be a non-empty string, got {value!r}", param=where
                )
            problem = unstorable(value)
            if problem is not None:
                raise InvalidRequest(f"{where}: a value holds {problem}", param=where)
            text = value.strip()
            return display_name(text) if spec.name == "gpu_name" else text


def unstorable(text: str) -> str | None:
    """What in ``text`` no database can hold or compare (a NUL, which Postgres text refuses; an
    unpaired UTF-16 surrogate, which is not Unicode), or None. JSON text carries either as an
    escape (``\\u0000``), which the request's own check cannot see inside a query parameter."""
    if "\x00" in text:
        return "a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "an unpaired UTF-16 surrogate (\\ud800-\\udfff); text must be valid Unicode"
    return None


def as_float(value: int | float) -> float | None:
    """``value`` as a float; None for an integer beyond every float (JSON's integers are
    unbounded: ``1e400`` written out in digits)."""
    try:
        return float(value)
    except OverflowError:
        return None


def _number(value: object, where: str) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = as_float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        raise InvalidRequest(f"{where} must be a number, got {value!r}", param=where)
    return number


_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def _boolean(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidRequest(f"{where} must be true or false, got {value!r}", param=where)


def comparable(spec: OfferField, value: Scalar) -> Comparable:
    """``value`` (of the field's type) in the form filters and sorting compare."""
    if isinstance(value, str):
        if spec.name == "gpu_name":
            return gpu_key(value)
        if spec.name == "geolocation":
            return value.rsplit(",", 1)[-1].strip().upper()
        return value.casefold()
    return float(value)


def offer_value(spec: OfferField, offer: Mapping[str, object]) -> Comparable | None:
    """The offer's value of the field, normalised; ``None`` when the offer does not report it.

    A value of the wrong type is a bug in whoever built the offer, so it raises ``TypeError``.
    """
    raw = offer.get(spec.name)
    if raw is None:
        return None
    if spec.numeric and isinstance(raw, int | float) and not isinstance(raw, bool):
        return comparable(spec, raw)
    if spec.kind is FieldKind.BOOL and isinstance(raw, bool):
        return comparable(spec, raw)
    if spec.kind is FieldKind.STR and isinstance(raw, str):
        return comparable(spec, raw)
    raise TypeError(f"offer field {spec.name} should be {spec.kind}, holds {raw!r}")
