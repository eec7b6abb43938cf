"""The seeded firm every twin loads: one professional-services firm, reproducible from a number.

    >>> firm = build_firm(7, today=date(2025, 6, 15))
    >>> len(firm.workers), len(firm.customers), len(firm.opportunities)
    (200, 20, 30)
    >>> firm == build_firm(7, today=date(2025, 6, 15))
    True

Each twin's `load_firm(state, firm)` writes the part its system holds: HCM the workers, PSA the
users and rate cards, ERP customers, cost centers, periods and cost rates, CRM accounts and open
deals. The result is fully determined by `(seed, workers, today)`; only `today=None` reads the
clock. Plain dataclasses with `Decimal` amounts and a currency beside them: twins imitate vendors
and do not import pssync's contracts. No I/O here.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sandbox._ids import salesforce_id, workday_id

ROLES: tuple[str, ...] = (
    "Partner",
    "Principal",
    "Senior Manager",
    "Manager",
    "Senior Consultant",
    "Consultant",
    "Analyst",
)
"""Rate-card roles, most senior first."""
MANAGER_ROLES: frozenset[str] = frozenset(ROLES[:4])
"""Roles that may be a project's delivery manager (Manager and above)."""

LINE_TIME_AND_MATERIALS = "time_and_materials"
LINE_FIXED_FEE = "fixed_fee"
LINE_MILESTONE = "milestone"

STATUS_ACTIVE = "active"
STATUS_LEAVE = "leave"
STATUS_TERMINATED = "terminated"

FIRM_CURRENCY = "USD"
"""The functional currency: cost rates are in it."""


# --------------------------------------------------------------------------- the dataclasses


class _Keyed:
    """A record other systems reference by its id (its external ID there)."""

    id: str

    @property
    def external_id(self) -> str:
        return self.id


@dataclass(frozen=True)
class CostCenter:
    id: str
    name: str
    practice: str | None = None
    active: bool = True


@dataclass(frozen=True)
class Practice:
    code: str
    name: str
    cost_center: str


@dataclass(frozen=True)
class Worker(_Keyed):
    id: str
    """Employee ID (Workday `workerId`): what PSA and ERP reference."""
    wid: str
    """Workday ID (32 hex)."""
    first_name: str
    last_name: str
    email: str
    role: str
    practice: str
    """Practice name."""
    cost_center: str
    location: str
    hire_date: date
    cost_rate: Decimal
    """Per hour, in `currency`."""
    currency: str = FIRM_CURRENCY
    status: str = STATUS_ACTIVE
    termination_date: date | None = None
    last_day_worked: date | None = None
    termination_entered_at: datetime | None = None
    """When the termination was entered in HCM (a future-dated one was entered earlier)."""
    termination_reason: str | None = None

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


@dataclass(frozen=True)
class RateCardLine:
    role: str
    bill_rate: Decimal
    """Per hour, in the card's currency."""
    effective_from: date
    effective_to: date | None = None

    def covers(self, on: date) -> bool:
        return self.effective_from <= on and (self.effective_to is None or on <= self.effective_to)


@dataclass(frozen=True)
class RateCard(_Keyed):
    id: str
    name: str
    currency: str
    lines: tuple[RateCardLine, ...]
    public_sector: bool = False

    def rate_for(self, role: str, on: date) -> Decimal | None:
        for line in self.lines:
            if line.role == role and line.covers(on):
                return line.bill_rate
        return None


@dataclass(frozen=True)
class Customer(_Keyed):
    id: str
    """Salesforce Account Id (18 characters, `001` prefix)."""
    name: str
    currency: str
    billing_country: str
    industry: str
    public_sector: bool = False
    credit_hold: bool = False


@dataclass(frozen=True)
class OpportunityLine:
    id: str
    """Salesforce OpportunityLineItem Id (`00k` prefix)."""
    product_code: str
    description: str
    line_type: str
    """`time_and_materials`, `fixed_fee` or `milestone`."""
    quantity: Decimal
    """Hours for time and materials, 1 for fixed fee and milestones."""
    unit_price: Decimal
    total_price: Decimal
    role: str | None = None
    service_date: date | None = None
    """Milestone target date."""


@dataclass(frozen=True)
class Opportunity(_Keyed):
    id: str
    """Salesforce Opportunity Id (18 characters, `006` prefix)."""
    name: str
    account_id: str
    currency: str
    amount: Decimal
    """Always the sum of the lines' total_price."""
    close_date: date
    stage: str
    practice: str
    cost_center: str
    rate_card_id: str
    delivery_manager: str
    """A worker id with a Manager-or-above role."""
    lines: tuple[OpportunityLine, ...]
    probability: int = 50


@dataclass(frozen=True)
class AccountingPeriod:
    period: str
    """`YYYY-MM`."""
    start: date
    end: date
    closed: bool


@dataclass(frozen=True)
class Firm:
    seed: int
    today: date
    name: str
    practices: tuple[Practice, ...]
    cost_centers: tuple[CostCenter, ...]
    workers: tuple[Worker, ...]
    rate_cards: tuple[RateCard, ...]
    customers: tuple[Customer, ...]
    opportunities: tuple[Opportunity, ...]
    periods: tuple[AccountingPeriod, ...]
    locations: tuple[str, ...] = field(default=())

    def worker(self, worker_id: str) -> Worker:
        return next(w for w in self.workers if w.id == worker_id)

    def customer(self, customer_id: str) -> Customer:
        return next(c for c in self.customers if c.id == customer_id)

    def rate_card(self, rate_card_id: str) -> RateCard:
        return next(r for r in self.rate_cards if r.id == rate_card_id)


# --------------------------------------------------------------------------- reference data

_PRACTICES = (
    ("STRAT", "Strategy", "CC-110"),
    ("DATA", "Data & AI", "CC-120"),
    ("CLOUD", "Cloud", "CC-130"),
    ("CYBER", "Cybersecurity", "CC-140"),
    ("ERP", "ERP Advisory", "CC-150"),
)
_INACTIVE_COST_CENTER = CostCenter("CC-190", "Legacy Outsourcing (closed)", None, active=False)

# role -> (share of head count, standard USD bill rate last year, cost rate)
_ROLE_TABLE: dict[str, tuple[float, int, int]] = {
    "Partner": (0.05, 450, 210),
    "Principal": (0.07, 380, 175),
    "Senior Manager": (0.10, 325, 150),
    "Manager": (0.15, 275, 125),
    "Senior Consultant": (0.23, 225, 100),
    "Consultant": (0.22, 185, 82),
    "Analyst": (0.18, 145, 62),
}
_ROLE_CODES = {
    "Partner": "PTR",
    "Principal": "PRN",
    "Senior Manager": "SM",
    "Manager": "MGR",
    "Senior Consultant": "SC",
    "Consultant": "CON",
    "Analyst": "ANL",
}
_LOCATIONS = (
    "New York",
    "Chicago",
    "San Francisco",
    "Washington DC",
    "Toronto",
    "London",
    "Berlin",
    "Paris",
)
_FIRST = (
    "Olivia Liam Emma Noah Ava Elijah Sophia James Isabella Lucas Mia Mateo Amelia Ethan "
    "Harper Levi Evelyn Aiden Abigail Daniel Emily Henry Ella Sebastian Elizabeth Jack Camila "
    "Owen Luna Samuel Sofia Wyatt Avery Leo Mila Ezra Aria Hudson Scarlett Maya Ravi Priya "
    "Chen Wei Yuki Hiro Fatima Omar Lena Jonas Chloe Hugo Ines Marco Giulia Sven Astrid Kofi "
    "Amara Diego Lucia Tomas Nadia Arjun Ananya Kenji Sana"
).split()
_LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White "
    "Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres "
    "Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts "
    "Patel Shah Kim Park Tanaka Sato Muller Schmidt Dubois Laurent Rossi Bianchi Okafor Mensah "
    "Johansson Larsen Novak Kowalski Haddad Silva Costa"
).split()
_CUSTOMERS = (
    # name, country, industry, public sector
    ("Acme Logistics", "US", "Transportation", False),
    ("Globex Manufacturing", "US", "Manufacturing", False),
    ("Initech Financial", "US", "Banking", False),
    ("Umbrella Health", "US", "Healthcare", False),
    ("Stark Energy", "US", "Energy", False),
    ("Wayne Retail Group", "US", "Retail", False),
    ("Cyberdyne Insurance", "US", "Insurance", False),
    ("Soylent Foods", "US", "Consumer Goods", False),
    ("Tyrell Biotech", "US", "Life Sciences", False),
    ("Hooli Media", "US", "Media", False),
    ("Vandelay Industries", "CA", "Manufacturing", False),
    ("Oceanic Airlines", "CA", "Transportation", False),
    ("Nordwind Versicherung", "DE", "Insurance", False),
    ("Rheinmetall Logistik", "DE", "Transportation", False),
    ("Banque Lumiere", "FR", "Banking", False),
    ("Maison Verte", "FR", "Retail", False),
    ("Van Dijk Energie", "NL", "Energy", False),
    ("State Department of Revenue", "US", "Government", True),
    ("City of Riverton", "US", "Government", True),
    ("Federal Transit Agency", "US", "Government", True),
)
_EUR_COUNTRIES = frozenset({"DE", "FR", "NL"})
_OFFERS = {
    "STRAT": ("Operating Model Redesign", "Growth Strategy", "Cost Transformation"),
    "DATA": ("Data Platform Build", "ML Forecasting Pilot", "Analytics Modernisation"),
    "CLOUD": ("Cloud Migration Wave 1", "Landing Zone", "FinOps Assessment"),
    "CYBER": ("Zero Trust Roadmap", "SOC Uplift", "Penetration Testing"),
    "ERP": ("ERP Selection", "Finance Transformation", "S/4 Readiness Assessment"),
}
_OPEN_STAGES = (
    ("Qualification", 10),
    ("Needs Analysis", 20),
    ("Value Proposition", 50),
    ("Proposal/Price Quote", 75),
    ("Negotiation/Review", 90),
)
_CENT = Decimal("0.01")


def _money(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def _month_start(day: date, offset: int) -> date:
    month = day.year * 12 + (day.month - 1) + offset
    return date(month // 12, month % 12 + 1, 1)


def _month_end(start: date) -> date:
    return _month_start(start, 1) - timedelta(days=1)


# --------------------------------------------------------------------------- the generator


def _periods(today: date) -> tuple[AccountingPeriod, ...]:
    """Six months back to three ahead: open are the previous, current and next three months."""
    periods = []
    for offset in range(-6, 4):
        start = _month_start(today, offset)
        periods.append(
            AccountingPeriod(
                period=f"{start.year:04d}-{start.month:02d}",
                start=start,
                end=_month_end(start),
                closed=offset <= -2,
            )
        )
    return tuple(periods)


def _rate_cards(today: date) -> tuple[RateCard, ...]:
    """Standard USD, standard EUR, public-sector USD; rates rise on 1 January this year."""
    this_year = date(today.year, 1, 1)
    last_year = date(today.year - 1, 1, 1)
    cards = []
    for card_id, name, currency, factor, public in (
        ("RC-STD-USD", "Standard USD", "USD", Decimal("1"), False),
        ("RC-STD-EUR", "Standard EUR", "EUR", Decimal("0.92"), False),
        ("RC-PUB-USD", "Public Sector USD", "USD", Decimal("0.85"), True),
    ):
        lines = []
        for role in ROLES:
            old = Decimal(_ROLE_TABLE[role][1]) * factor
            # Bill rates are round numbers: to 5 units per hour.
            old = (old / 5).quantize(Decimal(1), rounding=ROUND_HALF_UP) * 5
            new = (old * Decimal("1.05") / 5).quantize(Decimal(1), rounding=ROUND_HALF_UP) * 5
            lines.append(RateCardLine(role, _money(old), last_year, this_year - timedelta(days=1)))
            lines.append(RateCardLine(role, _money(new), this_year, None))
        cards.append(RateCard(card_id, name, currency, tuple(lines), public_sector=public))
    return tuple(cards)


def _roles(rng: random.Random, count: int) -> list[str]:
    """Head count per role by share; at least one Manager-or-above per practice."""
    roles: list[str] = []
    for role in ROLES:
        roles += [role] * round(_ROLE_TABLE[role][0] * count)
    while len(roles) < count:
        roles.append("Consultant")
    roles = roles[:count]
    rng.shuffle(roles)
    return roles


def _workers(
    rng: random.Random, count: int, today: date, practices: tuple[Practice, ...]
) -> tuple[Worker, ...]:
    roles = _roles(rng, count)
    # Managers-or-above are spread round-robin over practices first, so each practice can
    # staff a delivery manager; the rest are assigned at random.
    manager_slots = [i for i, r in enumerate(roles) if r in MANAGER_ROLES]
    practice_of: dict[int, Practice] = {}
    for n, i in enumerate(manager_slots):
        practice_of[i] = practices[n % len(practices)]
    emails: set[str] = set()
    workers = []
    for i, role in enumerate(roles):
        practice = practice_of.get(i) or rng.choice(practices)
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        local = f"{first}.{last}".lower()
        email, n = f"{local}@northwind-advisory.example", 2
        while email in emails:
            email, n = f"{local}{n}@northwind-advisory.example", n + 1
        emails.add(email)
        seniority_years = {"Partner": 12, "Principal": 10, "Senior Manager": 8}.get(role, 6)
        hire = today - timedelta(days=rng.randint(30, 365 * seniority_years))
        cost = Decimal(_ROLE_TABLE[role][2]) * Decimal(rng.randint(92, 108)) / 100
        workers.append(
            Worker(
                id=f"{21001 + i}",
                wid=workday_id("worker", 21001 + i),
                first_name=first,
                last_name=last,
                email=email,
                role=role,
                practice=practice.name,
                cost_center=practice.cost_center,
                location=rng.choice(_LOCATIONS),
                hire_date=hire,
                cost_rate=_money(cost),
            )
        )
    # Life events on junior-to-mid staff (indexes chosen from non-manager workers so every
    # practice keeps its delivery managers).
    juniors = [i for i, w in enumerate(workers) if w.role not in MANAGER_ROLES]
    picks = rng.sample(juniors, min(len(juniors), 11))
    entered = datetime.combine(today, time(9, 0), tzinfo=UTC)
    for n, i in enumerate(picks):
        w = workers[i]
        if n < 3:  # future-dated hires (pre-hire: in HCM, not yet started)
            hire = today + timedelta(days=rng.randint(7, 45))
            workers[i] = replace(w, hire_date=hire)
        elif n < 7:  # terminated in the past
            term = today - timedelta(days=rng.randint(10, 200))
            hire = min(w.hire_date, term - timedelta(days=90))
            workers[i] = replace(
                w,
                hire_date=hire,
                status=STATUS_TERMINATED,
                termination_date=term,
                last_day_worked=term - timedelta(days=rng.choice((0, 0, 1, 2))),
                termination_entered_at=entered - timedelta(days=(today - term).days + 14),
                termination_reason="Resignation",
            )
        elif n < 10:  # on leave
            workers[i] = replace(w, status=STATUS_LEAVE)
        else:  # a termination entered three days ago, effective in three weeks
            term = today + timedelta(days=21)
            workers[i] = replace(
                w,
                termination_date=term,
                last_day_worked=term - timedelta(days=2),
                termination_entered_at=entered - timedelta(days=3),
                termination_reason="Resignation",
            )
    return tuple(workers)


def _customers(rng: random.Random) -> tuple[Customer, ...]:
    numbers = rng.sample(range(1, 62**5), len(_CUSTOMERS))
    hold = rng.randrange(len(_CUSTOMERS) - 3)  # a private-sector customer
    customers = []
    for n, (name, country, industry, public) in enumerate(_CUSTOMERS):
        customers.append(
            Customer(
                id=salesforce_id("001", numbers[n]),
                name=name,
                currency="EUR" if country in _EUR_COUNTRIES else "USD",
                billing_country=country,
                industry=industry,
                public_sector=public,
                credit_hold=n == hold,
            )
        )
    return tuple(customers)


def _opportunity_lines(
    rng: random.Random, model: str, card: RateCard, close: date, offer: str, ids: Iterator[int]
) -> list[OpportunityLine]:
    """The lines of a deal billed by `model`: hours per role at the card's rates, one fixed fee,
    or two to four milestones after the close date. `ids` numbers the lines."""

    def line(
        code: str, description: str, quantity: Decimal, unit: Decimal, total: Decimal, **extra: Any
    ) -> OpportunityLine:
        return OpportunityLine(
            id=salesforce_id("00k", next(ids)),
            product_code=code,
            description=description,
            line_type=model,
            quantity=quantity,
            unit_price=unit,
            total_price=total,
            **extra,
        )

    lines: list[OpportunityLine] = []
    if model == LINE_TIME_AND_MATERIALS:
        for role in sorted(rng.sample(ROLES[1:], rng.randint(2, 4)), key=ROLES.index):
            rate = card.rate_for(role, close)
            assert rate is not None
            hours = Decimal(rng.randrange(40, 640, 8))
            description = f"{role} time and materials"
            code = f"PS-TM-{_ROLE_CODES[role]}"
            lines.append(line(code, description, hours, rate, _money(hours * rate), role=role))
    elif model == LINE_FIXED_FEE:
        fee = _money(Decimal(rng.randrange(20_000, 400_000, 500)))
        lines.append(line("PS-FF", f"{offer} (fixed fee)", Decimal(1), fee, fee))
    else:
        target = close
        for label in ("Discovery", "Design", "Build", "Deploy")[: rng.randint(2, 4)]:
            target = target + timedelta(days=rng.randint(21, 60))
            fee = _money(Decimal(rng.randrange(10_000, 150_000, 250)))
            lines.append(
                line("PS-MS", f"Milestone: {label}", Decimal(1), fee, fee, service_date=target)
            )
    return lines


def _opportunities(
    rng: random.Random,
    today: date,
    practices: tuple[Practice, ...],
    workers: tuple[Worker, ...],
    cards: tuple[RateCard, ...],
    customers: tuple[Customer, ...],
    count: int = 30,
) -> tuple[Opportunity, ...]:
    opp_numbers = rng.sample(range(1, 62**5), count)
    line_numbers = iter(rng.sample(range(1, 62**6), count * 8))
    card_by_id = {c.id: c for c in cards}
    managers = {
        p.code: [
            w
            for w in workers
            if w.practice == p.name
            and w.role in MANAGER_ROLES
            and w.status == STATUS_ACTIVE
            and w.termination_date is None
            and w.hire_date <= today
        ]
        for p in practices
    }
    # Each billing model at least a few times, then at random.
    models = [LINE_TIME_AND_MATERIALS] * 3 + [LINE_FIXED_FEE] * 3 + [LINE_MILESTONE] * 3
    models += rng.choices(
        [LINE_TIME_AND_MATERIALS, LINE_FIXED_FEE, LINE_MILESTONE], [5, 2, 3], k=count - 9
    )
    rng.shuffle(models)
    opportunities = []
    for n in range(count):
        customer = customers[n % len(customers)] if n < len(customers) else rng.choice(customers)
        practice = rng.choice(practices)
        if customer.public_sector:
            card = card_by_id["RC-PUB-USD"]
        else:
            card = card_by_id["RC-STD-EUR" if customer.currency == "EUR" else "RC-STD-USD"]
        close = today + timedelta(days=rng.randint(5, 90))
        stage, probability = rng.choice(_OPEN_STAGES)
        model = models[n]
        offer = rng.choice(_OFFERS[practice.code])
        lines = _opportunity_lines(rng, model, card, close, offer, line_numbers)
        amount = _money(sum((line.total_price for line in lines), Decimal(0)))
        opportunities.append(
            Opportunity(
                id=salesforce_id("006", opp_numbers[n]),
                name=f"{customer.name} - {offer}",
                account_id=customer.id,
                currency=card.currency,
                amount=amount,
                close_date=close,
                stage=stage,
                practice=practice.name,
                cost_center=practice.cost_center,
                rate_card_id=card.id,
                delivery_manager=rng.choice(managers[practice.code]).id,
                lines=tuple(lines),
                probability=probability,
            )
        )
    return tuple(opportunities)


def build_firm(seed: int = 7, *, workers: int = 200, today: date | None = None) -> Firm:
    """The firm for `seed`: the same (seed, workers, today) always gives an equal firm."""
    if workers < len(_PRACTICES) * 2:
        raise ValueError(f"a firm needs at least {len(_PRACTICES) * 2} workers")
    today = today or date.today()
    rng = random.Random(seed)
    practices = tuple(Practice(code, name, cc) for code, name, cc in _PRACTICES)
    cost_centers = (
        *(CostCenter(p.cost_center, p.name, p.name) for p in practices),
        _INACTIVE_COST_CENTER,
    )
    staff = _workers(rng, workers, today, practices)
    cards = _rate_cards(today)
    customers = _customers(rng)
    opportunities = _opportunities(rng, today, practices, staff, cards, customers)
    return Firm(
        seed=seed,
        today=today,
        name="Northwind Advisory",
        practices=practices,
        cost_centers=cost_centers,
        workers=staff,
        rate_cards=cards,
        customers=customers,
        opportunities=opportunities,
        periods=_periods(today),
        locations=_LOCATIONS,
    )


__all__ = [
    "MANAGER_ROLES",
    "ROLES",
    "AccountingPeriod",
    "CostCenter",
    "Customer",
    "Firm",
    "Opportunity",
    "OpportunityLine",
    "Practice",
    "RateCard",
    "RateCardLine",
    "Worker",
    "build_firm",
]
