"""A seeded card-transaction simulator whose causes of fraud are known.

No public fraud dataset ships with its ground truth, so this generator is written by hand. Each
row is one card transaction with eleven interpretable features:

==========================  ===========  =====================================================
feature                     kind         generator (all drawn independently per row, except
                                         where noted)
==========================  ===========  =====================================================
amount                      continuous   log-normal, median depends on the merchant category,
                                         rounded to cents, clipped to [0.5, 10000] (currency
                                         units)
hour                        integer      0..23, mostly daytime, ~10% between 00:00 and 05:59
merchant_category           categorical  8 categories (see ``MERCHANT_CATEGORIES``)
distance_from_home_km       continuous   log-normal (median ~8 km), clipped to [0, 5000]
card_present                binary       1 = chip/swipe; 0 for almost all online retail
txn_count_last_hour         integer      transactions on the card in the previous hour,
                                         Poisson(0.4), clipped to [0, 20]
account_age_days            integer      1..3650, ~6% of accounts younger than 30 days
foreign                     binary       merchant abroad, ~6%
customer_age                integer      18..90 — distractor, no effect on fraud
device_score                continuous   0..1 device-fingerprint score — distractor
day_of_week                 integer      0 (Monday) .. 6 — distractor
==========================  ===========  =====================================================

Fraud rule (a latent logistic model over the causal features only)::

    score =  1.0 * max(0, ln(amount / 100))          # large amounts
           + 1.6 * [hour <= 5]                       # night
           + merchant_risk[merchant_category]        # electronics 1.4, cash_withdrawal 1.2,
                                                     # online_retail 0.9, travel 0.6, else 0
           + 0.8 * log10(1 + distance_from_home_km)  # far from home
           + 1.0 * (1 - card_present)                # card not present
           + 0.7 * txn_count_last_hour               # velocity
           + 1.6 * [account_age_days < 30]           # new account
           + 1.1 * foreign
    fraud  = score + noise > threshold,  noise ~ Logistic(0, 0.6)

A latent variable with logistic noise is exactly a logistic model: P(fraud | x) =
sigmoid((score - threshold) / 0.6). The threshold (minus the intercept) is the empirical
``1 - FRAUD_RATE`` quantile of ``score + noise`` in the drawn sample, so every seed and row count
gives the same fraud rate, 1.5% (rounded to whole rows). ``customer_age``, ``device_score`` and
``day_of_week`` are drawn independently of everything else, so they carry no information about
fraud at all.

``changeable`` marks what a fraudster controls at transaction time: the amount, the time, the
merchant, where and how the card is used (distance, card present, foreign merchant), how fast
they spend (velocity) and their own device. The account's age and the customer's age are facts
about the victim's account and are not changeable.
"""

from __future__ import annotations

import numpy as np

from auditkit.card import FeatureSpec
from auditkit.data.base import AuditData, DataError
from auditkit.data.readers import stratified_split

FRAUD_RATE = 0.015
NOISE_SCALE = 0.6
MERCHANT_CATEGORIES = [
    "grocery",
    "restaurant",
    "fuel",
    "travel",
    "online_retail",
    "electronics",
    "entertainment",
    "cash_withdrawal",
]
# Share of transactions per category, the category's median amount (currency units) and its
# fraud-risk term in the score.
_CATEGORY_SHARE = [0.24, 0.18, 0.12, 0.05, 0.20, 0.06, 0.09, 0.06]
_CATEGORY_MEDIAN_AMOUNT = [35.0, 28.0, 45.0, 220.0, 40.0, 180.0, 30.0, 80.0]
MERCHANT_RISK = {
    "grocery": 0.0,
    "restaurant": 0.0,
    "fuel": 0.0,
    "travel": 0.6,
    "online_retail": 0.9,
    "electronics": 1.4,
    "entertainment": 0.0,
    "cash_withdrawal": 1.2,
}
WEIGHTS = {
    "log_amount_over_100": 1.0,
    "night": 1.6,
    "merchant_risk": 1.0,  # multiplies MERCHANT_RISK[category]
    "log10_distance": 0.8,
    "card_not_present": 1.0,
    "txn_count_last_hour": 0.7,
    "new_account": 1.6,
    "foreign": 1.1,
}
CAUSAL_FEATURES = [
    "amount",
    "hour",
    "merchant_category",
    "distance_from_home_km",
    "card_present",
    "txn_count_last_hour",
    "account_age_days",
    "foreign",
]
NON_CAUSAL_FEATURES = ["customer_age", "device_score", "day_of_week"]
RULES = (
    "score = 1.0*max(0, ln(amount/100)) + 1.6*[hour<=5] + merchant_risk[merchant_category] "
    "(electronics 1.4, cash_withdrawal 1.2, online_retail 0.9, travel 0.6, others 0) "
    "+ 0.8*log10(1+distance_from_home_km) + 1.0*(1-card_present) + 0.7*txn_count_last_hour "
    "+ 1.6*[account_age_days<30] + 1.1*foreign; fraud iff score + Logistic(0, 0.6) noise "
    "exceeds the threshold that makes 1.5% of rows fraud. customer_age, device_score and "
    "day_of_week are independent of everything and have no effect."
)

FEATURES: list[FeatureSpec] = [
    FeatureSpec(name="amount", kind="continuous", min=0.5, max=10000.0, unit="currency units",
                description="Transaction amount (heavy-tailed).", changeable=True),
    FeatureSpec(name="hour", kind="integer", min=0, max=23, unit="hour of day",
                description="Local hour of the transaction.", changeable=True),
    FeatureSpec(name="merchant_category", kind="categorical", min=0, max=7,
                categories=MERCHANT_CATEGORIES, description="Merchant category code.",
                changeable=True),
    FeatureSpec(name="distance_from_home_km", kind="continuous", min=0.0, max=5000.0, unit="km",
                description="Distance between the merchant and the cardholder's home.",
                changeable=True),
    FeatureSpec(name="card_present", kind="binary", min=0, max=1,
                description="1 if the physical card was used (chip/swipe), 0 if card-not-present.",
                changeable=True),
    FeatureSpec(name="txn_count_last_hour", kind="integer", min=0, max=20, unit="transactions",
                description="Transactions on this card in the previous hour (velocity).",
                changeable=True),
    FeatureSpec(name="account_age_days", kind="integer", min=1, max=3650, unit="days",
                description="Age of the card account; a fact about the victim's account.",
                changeable=False),
    FeatureSpec(name="foreign", kind="binary", min=0, max=1,
                description="1 if the merchant is abroad.", changeable=True),
    FeatureSpec(name="customer_age", kind="integer", min=18, max=90, unit="years",
                description="Cardholder's age (no effect on fraud).", changeable=False),
    FeatureSpec(name="device_score", kind="continuous", min=0.0, max=1.0,
                description="Device-fingerprint score (no effect on fraud).", changeable=True),
    FeatureSpec(name="day_of_week", kind="integer", min=0, max=6, unit="day (0=Monday)",
                description="Day of the week (no effect on fraud).", changeable=True),
]


def _simulate_features(rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw the raw feature columns, each ``[rows]`` float64, in the units of ``FEATURES``."""
    cat = rng.choice(len(MERCHANT_CATEGORIES), size=rows, p=_CATEGORY_SHARE)
    median = np.asarray(_CATEGORY_MEDIAN_AMOUNT)[cat]
    amount = np.round(np.clip(median * rng.lognormal(0.0, 1.0, rows), 0.5, 10000.0), 2)
    # 10% night hours (0..5) and the rest spread over 6..23 with an evening bump.
    day_weights = np.array([1, 2, 3, 4, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 8, 7, 5, 3], dtype=float)
    day_hours = rng.choice(np.arange(6, 24), size=rows, p=day_weights / day_weights.sum())
    hour = np.where(rng.random(rows) < 0.10, rng.integers(0, 6, rows), day_hours)
    distance = np.round(np.clip(rng.lognormal(np.log(8.0), 1.3, rows), 0.0, 5000.0), 1)
    online = cat == MERCHANT_CATEGORIES.index("online_retail")
    card_present = np.where(online, rng.random(rows) < 0.02, rng.random(rows) < 0.85)
    velocity = np.clip(rng.poisson(0.4, rows), 0, 20)
    new = rng.random(rows) < 0.06
    account_age = np.where(new, rng.integers(1, 30, rows), rng.integers(30, 3651, rows))
    foreign = rng.random(rows) < 0.06
    return {
        "amount": amount,
        "hour": hour,
        "merchant_category": cat,
        "distance_from_home_km": distance,
        "card_present": card_present,
        "txn_count_last_hour": velocity,
        "account_age_days": account_age,
        "foreign": foreign,
        # Distractors: independent of every other column and of the label.
        "customer_age": np.clip(np.round(rng.normal(45, 15, rows)), 18, 90),
        "device_score": rng.beta(2.0, 2.0, rows),
        "day_of_week": rng.integers(0, 7, rows),
    }


def fraud_score(x: np.ndarray) -> np.ndarray:
    """The noiseless rule score (before the threshold) for feature rows ``x`` ``[N, 11]``.

    Columns are in ``FEATURES`` order and raw units; returns ``[N]`` float64. Higher means more
    likely fraud; ``P(fraud) = sigmoid((score - threshold) / NOISE_SCALE)``.
    """
    col = {f.name: x[:, i].astype(np.float64) for i, f in enumerate(FEATURES)}
    risk = np.asarray([MERCHANT_RISK[c] for c in MERCHANT_CATEGORIES])
    w = WEIGHTS
    return (
        w["log_amount_over_100"] * np.maximum(0.0, np.log(col["amount"] / 100.0))
        + w["night"] * (col["hour"] <= 5)
        + w["merchant_risk"] * risk[col["merchant_category"].astype(int)]
        + w["log10_distance"] * np.log10(1.0 + col["distance_from_home_km"])
        + w["card_not_present"] * (1.0 - col["card_present"])
        + w["txn_count_last_hour"] * col["txn_count_last_hour"]
        + w["new_account"] * (col["account_age_days"] < 30)
        + w["foreign"] * col["foreign"]
    )


def load_fraud(rows: int = 60_000, seed: int = 0, test_fraction: float = 0.25) -> AuditData:
    """Simulate ``rows`` transactions and split them, stratified and seeded, into train/test.

    Returns tabular :class:`AuditData`: ``x`` ``[N, 11]`` float32 in raw units (categorical
    codes as floats), ``y`` ``[N]`` int64 with 1 = fraud (1.5% of rows). ``ground_truth`` holds
    the causal and non-causal feature names, the rule text, the weights, the merchant risks and
    the drawn threshold. Same ``rows`` and ``seed`` give the same arrays.
    """
    if rows < 400:
        raise DataError(
            f"fraud: rows={rows} is too small; use rows >= 400 so both splits hold fraud"
        )
    rng = np.random.default_rng(seed)
    cols = _simulate_features(rows, rng)
    x = np.stack([cols[f.name] for f in FEATURES], axis=1).astype(np.float32)
    latent = fraud_score(x) + rng.logistic(0.0, NOISE_SCALE, rows)
    # Threshold at the empirical quantile: exactly round(FRAUD_RATE * rows) frauds.
    n_fraud = int(round(FRAUD_RATE * rows))
    threshold = float(np.sort(latent)[rows - n_fraud - 1 : rows - n_fraud + 1].mean())
    y = (latent > threshold).astype(np.int64)
    idx_train, idx_test = stratified_split(y, test_fraction, seed, "fraud")
    return AuditData(
        name="fraud",
        task="tabular-classification",
        x_train=x[idx_train],
        y_train=y[idx_train],
        x_test=x[idx_test],
        y_test=y[idx_test],
        class_names=["legit", "fraud"],
        positive_class="fraud",
        features=[f.model_copy(deep=True) for f in FEATURES],
        ground_truth={
            "causal_features": list(CAUSAL_FEATURES),
            "non_causal_features": list(NON_CAUSAL_FEATURES),
            "rules": RULES,
            "weights": dict(WEIGHTS),
            "merchant_risk": dict(MERCHANT_RISK),
            "noise_scale": NOISE_SCALE,
            "threshold": threshold,
            "fraud_rate": float(y.mean()),
        },
        meta={"source": "auditkit.data.fraud simulator", "rows": rows, "seed": seed,
              "test_fraction": test_fraction},
    )
