"""A synthetic, realistically dirty customer-churn dataset for demos and tests.

Causal model (one row = one monthly snapshot of one customer; ``churned`` = the customer
leaves within the next month)::

    region, payment_method                       ~ fixed shares
    contract        ~ month-to-month 55% / one year 25% / two year 20%
    plan            ~ basic / standard / premium
    tenure_months   = tenure at the start of the period (longer for longer contracts) + month
    monthly_charges = plan price + contract surcharge (month-to-month +8, two-year -6) + noise
    total_charges   = monthly_charges * tenure_months * (1 + noise)
    data_usage_gb   ~ Gamma around the plan's allowance
    support_tickets ~ Poisson(0.6, higher on month-to-month and on high charges)
    churned         ~ Bernoulli(sigmoid(logit)), logit =
          -1.9 + 1.1*[month-to-month] - 0.6*[two year] + 0.45*tickets - 0.025*tenure
          + 0.03*(monthly_charges - 60) - 0.03*(data_usage_gb - 15)
          + 0.4*[electronic check]                    (churn rate about 23%)

``drift=True`` simulates the following 12 months with *covariate shift* (more month-to-month
contracts, charges +12%, 60% more tickets) and *concept shift* (tickets weigh twice as much,
tenure protects less, and heavy data users now leave instead of staying — a rival's
unlimited plan: +0.05*(data_usage_gb - 15); churn rate about 35%). The usage flip is what
makes a model of the first period rank the later one worse (ROC-AUC about 0.75 instead of
0.82 for a gradient-boosting stand-in), so retraining on the later period's labels pays.

Dirt, each at a small documented rate (fraction of rows):

=====================  =====  ===========================================================
exact duplicate rows   1%     re-sent records
missing values         2%     per column in tenure, charges, usage, tickets, region, payment
missing label          0.5%   ``churned`` empty
missing timestamp      0.3%   ``event_timestamp`` empty
impossible outliers    0.5%   negative tenure, and separately monthly_charges × 1000
date formats           20%    "03/15/2025" (10%) and "2025-03-15 10:00:00+00:00" (10%)
inconsistent text      15%    per text column: "Month-to-Month", " month to month ", ...
numbers as strings     3%     monthly_charges as "$64.20" or "1,064.20"
bot-like rows          1%     identical feature values under many fake customer ids
=====================  =====  ===========================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

DUPLICATE_RATE = 0.01
MISSING_RATE = 0.02
MISSING_LABEL_RATE = 0.005
MISSING_TIMESTAMP_RATE = 0.003
OUTLIER_RATE = 0.005
DATE_FORMAT_RATE = 0.10  # each of the two non-ISO formats
TEXT_VARIANT_RATE = 0.15
NUMBER_STRING_RATE = 0.03
BOT_RATE = 0.01
BOT_GROUP_SIZE = 10  # fake ids per bot template (the clean stage drops groups of >= 5)

PLANS = {"basic": 30.0, "standard": 55.0, "premium": 85.0}
PLAN_USAGE = {"basic": 6.0, "standard": 18.0, "premium": 40.0}
CONTRACTS = ["Month-to-month", "One year", "Two year"]
REGIONS = ["north", "south", "east", "west"]
PAYMENTS = ["Electronic check", "Mailed check", "Bank transfer", "Credit card"]
MISSING_COLUMNS = [
    "tenure_months",
    "monthly_charges",
    "data_usage_gb",
    "support_tickets",
    "region",
    "payment_method",
]
TEXT_COLUMNS = ["plan", "contract", "payment_method"]


def _text_variant(value: str, k: int) -> str:
    """Case/space/hyphen variants of a category (what ingest has to normalize)."""
    variants = (
        value.title(),
        f" {value.lower()} ",
        value.upper().replace(" ", "-"),
        value.lower().replace("-", " "),
        value.title().replace("-", "_").replace(" ", "_"),
    )
    return variants[k % len(variants)]


def _clean_frame(rng: np.random.Generator, rows: int, drift: bool) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    n_cust = max(1, -(-rows // 4))  # about 4 monthly snapshots per customer
    pairs = rng.choice(n_cust * 12, size=rows, replace=rows > n_cust * 12)
    cust, month = pairs // 12, pairs % 12

    # Static customer attributes.
    contract_p = [0.70, 0.18, 0.12] if drift else [0.55, 0.25, 0.20]
    c_contract = rng.choice(3, size=n_cust, p=contract_p)
    c_plan = rng.choice(list(PLANS), size=n_cust, p=[0.35, 0.40, 0.25])
    c_region = rng.choice(REGIONS, size=n_cust, p=[0.3, 0.25, 0.25, 0.2])
    c_payment = rng.choice(len(PAYMENTS), size=n_cust, p=[0.35, 0.2, 0.25, 0.2])
    c_start_tenure = np.round(np.array([2, 14, 30])[c_contract] + rng.gamma(1.5, 10, n_cust))
    c_extra = rng.normal(0, 6, n_cust)

    contract = c_contract[cust]
    plan = c_plan[cust]
    tenure = c_start_tenure[cust] + month + (12 if drift else 0)
    price = np.array([PLANS[p] for p in plan])
    charges = price + np.array([8.0, 0.0, -6.0])[contract] + c_extra[cust] + rng.normal(0, 3, rows)
    charges = np.clip(charges * (1.12 if drift else 1.0), 15, None).round(2)
    usage = rng.gamma(3.0, np.array([PLAN_USAGE[p] for p in plan]) / 3.0).round(2)
    ticket_rate = (0.6 + 0.5 * (contract == 0) + 0.01 * (charges - 60).clip(0)) * (
        1.6 if drift else 1.0
    )
    tickets = rng.poisson(ticket_rate)
    total = (charges * tenure * rng.normal(1.0, 0.03, rows)).round(2)
    mtm, two_year = (contract == 0), (contract == 2)
    e_check = c_payment[cust] == 0
    logit = (
        (-3.3 if drift else -1.9)
        + 1.1 * mtm
        - 0.6 * two_year
        + (0.9 if drift else 0.45) * tickets
        - (0.012 if drift else 0.025) * tenure
        + 0.03 * (charges - 60)
        + (0.05 if drift else -0.03) * (usage - 15)
        + 0.4 * e_check
    )
    churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)

    base = pd.Timestamp("2025-01-01" if drift else "2024-01-01")
    ts = [
        base + pd.DateOffset(months=int(m)) + pd.Timedelta(days=int(d), hours=int(h))
        for m, d, h in zip(month, rng.integers(0, 28, rows), rng.integers(0, 24, rows), strict=True)
    ]
    return pd.DataFrame(
        {
            "customer_id": [f"C{100000 + c:06d}" for c in cust],
            "event_timestamp": ts,
            "tenure_months": tenure.astype(float),
            "plan": plan,
            "contract": np.array(CONTRACTS)[contract],
            "monthly_charges": charges,
            "total_charges": total,
            "data_usage_gb": usage,
            "support_tickets": tickets.astype(float),
            "region": c_region[cust],
            "payment_method": np.array(PAYMENTS)[c_payment[cust]],
            "churned": churned,
        }
    )


def _add_bots(rng: np.random.Generator, df: pd.DataFrame) -> pd.DataFrame:
    """Bot-like rows: one template's feature values repeated under many fake ids."""
    import pandas as pd

    n_bots = round(BOT_RATE * len(df))
    if n_bots < BOT_GROUP_SIZE:
        return df
    groups = []
    for g in range(n_bots // BOT_GROUP_SIZE):
        template = df.iloc[[int(rng.integers(len(df)))]]
        bots = pd.concat([template] * BOT_GROUP_SIZE, ignore_index=True)
        bots["customer_id"] = [f"C{900000 + g * 1000 + i:06d}" for i in range(BOT_GROUP_SIZE)]
        bots["event_timestamp"] = (
            df["event_timestamp"]
            .sample(BOT_GROUP_SIZE, random_state=int(rng.integers(1 << 31)))
            .to_numpy()
        )
        bots["churned"] = rng.integers(0, 2, BOT_GROUP_SIZE)
        groups.append(bots)
    return pd.concat([df, *groups], ignore_index=True)


def _make_dirty(rng: np.random.Generator, df: pd.DataFrame) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    n = len(df)

    def pick(rate: float) -> np.ndarray:
        return rng.random(n) < rate

    # Impossible values (before the string formatting below).
    df.loc[pick(OUTLIER_RATE), "tenure_months"] *= -1
    df.loc[pick(OUTLIER_RATE), "monthly_charges"] *= 1000
    for col in MISSING_COLUMNS:
        df.loc[pick(MISSING_RATE), col] = np.nan
    df["churned"] = df["churned"].astype("Int64")
    df.loc[pick(MISSING_LABEL_RATE), "churned"] = pd.NA

    # Numbers as strings: "$64.20" or "1,064.20" (the column becomes text in the CSV).
    charges = df["monthly_charges"].astype(object)
    as_str = pick(NUMBER_STRING_RATE) & charges.notna().to_numpy()
    dollar = rng.random(n) < 0.5
    charges[as_str & dollar] = [f"${v:,.2f}" for v in charges[as_str & dollar]]
    charges[as_str & ~dollar] = [f"{v:,.2f}" for v in charges[as_str & ~dollar]]
    df["monthly_charges"] = charges

    for col in TEXT_COLUMNS:
        mask = pick(TEXT_VARIANT_RATE) & df[col].notna().to_numpy()
        ks = rng.integers(0, 5, n)
        df.loc[mask, col] = [
            _text_variant(v, int(k)) for v, k in zip(df.loc[mask, col], ks[mask], strict=True)
        ]

    # Mixed date formats; ISO is the default.
    ts = pd.to_datetime(df["event_timestamp"])
    fmt = rng.random(n)
    text = ts.dt.strftime("%Y-%m-%dT%H:%M:%S").astype(object)
    us = fmt < DATE_FORMAT_RATE
    tz = (fmt >= DATE_FORMAT_RATE) & (fmt < 2 * DATE_FORMAT_RATE)
    text[us] = ts[us].dt.strftime("%m/%d/%Y")
    text[tz] = ts[tz].dt.strftime("%Y-%m-%d %H:%M:%S+00:00")
    text[pick(MISSING_TIMESTAMP_RATE)] = None
    df["event_timestamp"] = text

    dups = df[pick(DUPLICATE_RATE)]
    df = pd.concat([df, dups], ignore_index=True)
    return df.sample(frac=1.0, random_state=int(rng.integers(1 << 31))).reset_index(drop=True)


def generate(rows: int, seed: int = 0, drift: bool = False) -> pd.DataFrame:
    """A dirty churn table of about `rows` rows (plus ~2% bots and duplicates); seeded."""
    import numpy as np

    if rows < 1:
        raise ValueError(f"rows: expected a positive number, got {rows}")
    # A separate stream for the drifted period, so churn.csv does not change with `drift`.
    rng = np.random.default_rng([seed, 1 if drift else 0])
    df = _clean_frame(rng, rows, drift)
    df = _add_bots(rng, df)
    return _make_dirty(rng, df)


SPEC_TEMPLATE = """\
# kubeloop project spec for the synthetic churn demo (written by `kubeloop data demo`).
name: churn
data:
  source: churn.csv          # monthly customer snapshots (dirty on purpose)
  label: churned             # 1 = the customer leaves within the next month
  entity: customer_id        # one customer appears in several snapshots
  timestamp: event_timestamp # split by time: train on the past, test on the future
  clean:
    # Physical limits: values outside are impossible and become missing.
    valid_ranges:
      tenure_months: [0, 600]
      monthly_charges: [0, 1000]
evaluate:
  slice_by: [region]         # report metrics per region too
  minimums:
    roc_auc: 0.6             # the model is not registered below this
"""


def write_demo(
    out_dir: str | Path, rows: int, seed: int = 0, drift: bool = False
) -> dict[str, Path]:
    """Write churn.csv (+ churn_drift.csv) and, if absent, a ready kubeloop.yaml."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"data": out / "churn.csv"}
    generate(rows, seed=seed).to_csv(paths["data"], index=False)
    if drift:
        paths["drift"] = out / "churn_drift.csv"
        generate(rows, seed=seed, drift=True).to_csv(paths["drift"], index=False)
    spec = out / "kubeloop.yaml"
    if not spec.exists():
        spec.write_text(SPEC_TEMPLATE)
    paths["spec"] = spec
    return paths
