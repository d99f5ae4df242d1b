"""Stripe's test-mode payment methods (`pm_card_visa`, `pm_card_amex`, ...).

Each test id stands for one card: brand, funding, issuing country and, for the
decline cards, the error Stripe's test mode answers when it is attached. The
fingerprint is stable per card number, so attaching `pm_card_visa` twice is
detectably the same card, as on Stripe.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from typing import Final

from billing.processor.base import JSONDict


@dataclass(frozen=True)
class TestCard:
    """One of Stripe's test-mode payment methods (pm_card_*)."""

    __test__ = False  # not a pytest test class, whatever its name

    number: str
    brand: str
    display_brand: str
    funding: str
    country: str
    # (code, decline_code, message) when attaching it is declined, as in test mode.
    decline: tuple[str, str, str] | None = None

    @property
    def fingerprint(self) -> str:
        """Stable per card number, like Stripe's: the same card always has the
        same fingerprint, so attaching pm_card_visa twice is detectably the same card."""
        digest = hashlib.sha256(f"fake-card:{self.number}".encode()).digest()
        return base64.b64encode(digest, altchars=b"Ab").decode()[:16]

    def details(self, created: int) -> JSONDict:
        """The `card` fields of a PaymentMethod made from this card at `created`."""
        network = _NETWORK_OF.get(self.brand, self.brand)
        return {
            "brand": self.brand,
            "display_brand": self.display_brand,
            "country": self.country,
            "exp_month": 12,
            "exp_year": time.gmtime(created).tm_year + 3,
            "fingerprint": self.fingerprint,
            "funding": self.funding,
            "last4": self.number[-4:],
            "generated_from": None,
            "networks": {"available": [network], "preferred": None},
            "wallet": None,
        }


_DECLINED = ("card_declined", "generic_decline", "Your card was declined.")
_INSUFFICIENT = ("card_declined", "insufficient_funds", "Your card has insufficient funds.")
_EXPIRED = ("expired_card", "expired_card", "Your card has expired.")
_BAD_CVC = ("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.")
_PROCESSING = ("processing_error", "processing_error", "An error occurred while processing your card. Try again.")

TEST_CARDS: Final[dict[str, TestCard]] = {
    "pm_card_visa": TestCard("4242424242424242", "visa", "visa", "credit", "US"),
    "pm_card_visa_debit": TestCard("4000056655665556", "visa", "visa", "debit", "US"),
    "pm_card_mastercard": TestCard("5555555555554444", "mastercard", "mastercard", "credit", "US"),
    "pm_card_mastercard_debit": TestCard("5200828282828210", "mastercard", "mastercard", "debit", "US"),
    "pm_card_mastercard_prepaid": TestCard("5105105105105100", "mastercard", "mastercard", "prepaid", "US"),
    "pm_card_amex": TestCard("378282246310005", "amex", "american_express", "credit", "US"),
    "pm_card_discover": TestCard("6011111111111117", "discover", "discover", "credit", "US"),
    "pm_card_diners": TestCard("3056930009020004", "diners", "diners_club", "credit", "US"),
    "pm_card_jcb": TestCard("3566002020360505", "jcb", "jcb", "credit", "JP"),
    "pm_card_unionpay": TestCard("6200000000000005", "unionpay", "union_pay", "credit", "CN"),
    # Attaches fine; only charging it fails (Stripe's "decline after attaching").
    "pm_card_chargeCustomerFail": TestCard("4000000000000341", "visa", "visa", "credit", "US"),
    # Declined when attached, as Stripe's test mode does.
    "pm_card_chargeDeclined": TestCard("4000000000000002", "visa", "visa", "credit", "US", _DECLINED),
    "pm_card_visa_chargeDeclined": TestCard("4000000000000002", "visa", "visa", "credit", "US", _DECLINED),
    "pm_card_chargeDeclinedInsufficientFunds": TestCard(
        "4000000000009995", "visa", "visa", "credit", "US", _INSUFFICIENT
    ),
    "pm_card_visa_chargeDeclinedInsufficientFunds": TestCard(
        "4000000000009995", "visa", "visa", "credit", "US", _INSUFFICIENT
    ),
    "pm_card_chargeDeclinedExpiredCard": TestCard("4000000000000069", "visa", "visa", "credit", "US", _EXPIRED),
    "pm_card_chargeDeclinedIncorrectCvc": TestCard("4000000000000127", "visa", "visa", "credit", "US", _BAD_CVC),
    "pm_card_chargeDeclinedProcessingError": TestCard("4000000000000119", "visa", "visa", "credit", "US", _PROCESSING),
}
_NETWORK_OF: Final = {"amex": "amex", "diners": "diners", "unionpay": "unionpay"}
