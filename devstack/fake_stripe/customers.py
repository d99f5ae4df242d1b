"""Customers in the Fake: create, retrieve, update, delete, and the tax
location Stripe validates immediately (a real ISO 3166 country; for the US a
well-formed ZIP code, for Canada a postal code or a province)."""

from __future__ import annotations

import copy
import re
from typing import Final

from billing.processor.base import JSONDict
from devstack.fake_stripe.core import ADDRESS_KEYS, FakeCore, shape
from devstack.fake_stripe.countries import ISO_3166_ALPHA2
from devstack.fake_stripe.events import changed

_US_POSTAL_CODE = re.compile(r"^\d{5}(-\d{4})?$")
_TAX_EXEMPT: Final = frozenset({"none", "exempt", "reverse"})
_CUSTOMER_UPDATE_FIELDS: Final = frozenset(
    {
        "address",
        "description",
        "email",
        "invoice_settings",
        "metadata",
        "name",
        "phone",
        "preferred_locales",
        "shipping",
        "tax_exempt",
    }
)
_INVOICE_SETTINGS_FIELDS: Final = frozenset({"custom_fields", "default_payment_method", "footer", "rendering_options"})


class CustomersMixin(FakeCore):
    """The Processor interface's customer calls."""

    def create_customer(
        self,
        *,
        idempotency_key: str,
        email: str | None,
        name: str | None,
        metadata: dict[str, str],
        preferred_locales: list[str] | None = None,
        tax_exempt: str | None = None,
    ) -> JSONDict:
        args = {
            "email": email,
            "name": name,
            "metadata": metadata,
            "preferred_locales": preferred_locales,
            "tax_exempt": tax_exempt,
        }

        def create() -> JSONDict:
            self._check_email(email)
            self._check_metadata(metadata)
            self._check_tax_exempt(tax_exempt)
            customer = shape("customer")
            customer.update(
                id=self._next_id("cus_fake"),
                created=int(self._now()),
                email=email,
                name=name,
                metadata={k: str(v) for k, v in metadata.items() if v not in ("", None)},
                preferred_locales=list(preferred_locales or []),
                tax_exempt=tax_exempt or "none",
                # What a brand-new Stripe customer has, where the fixture shows a used one.
                address=None,
                shipping=None,
                currency=None,
                discount=None,
                invoice_prefix=f"FAKE{self._counters['cus_fake']:04d}",
            )
            self._customers[customer["id"]] = customer
            self._emit("customer.created", customer)
            return customer

        return self._run("create_customer", args, create, idempotency_key=idempotency_key)

    def retrieve_customer(self, customer_id: str) -> JSONDict:
        return self._run("retrieve_customer", {"customer_id": customer_id}, lambda: self._get_customer(customer_id))

    def update_customer(self, customer_id: str, *, idempotency_key: str | None = None, fields: JSONDict) -> JSONDict:
        def update() -> JSONDict:
            customer = self._live_customer(customer_id)
            unknown = sorted(set(fields) - _CUSTOMER_UPDATE_FIELDS)
            if unknown:
                raise self._error(
                    400, f"Received unknown parameter: {unknown[0]}", code="parameter_unknown", param=unknown[0]
                )
            if "email" in fields:
                self._check_email(fields["email"])
            if "tax_exempt" in fields:
                self._check_tax_exempt(fields["tax_exempt"])
            updated = copy.deepcopy(customer)
            for key, value in fields.items():
                if key == "metadata":
                    updated["metadata"] = self._merge_metadata(updated.get("metadata") or {}, value)
                elif key == "invoice_settings":
                    updated["invoice_settings"] = self._merge_invoice_settings(customer_id, updated, value)
                elif key == "address":
                    updated["address"] = self._address(value, customer.get("address")) if value else None
                elif key == "preferred_locales":
                    updated["preferred_locales"] = list(value or [])
                else:
                    updated[key] = None if value == "" else value
            self._customers[customer_id] = updated
            self._emit_update(customer, updated)
            return updated

        args = {"customer_id": customer_id, "fields": fields}
        return self._run("update_customer", args, update, idempotency_key=idempotency_key)

    def delete_customer(self, customer_id: str, *, idempotency_key: str) -> JSONDict:
        def delete() -> JSONDict:
            last = self._live_customer(customer_id)
            del self._customers[customer_id]
            self._deleted_customers.add(customer_id)
            # Stripe detaches a deleted customer's payment methods.
            for pm in self._payment_methods.values():
                if pm.get("customer") == customer_id:
                    pm["customer"] = None
                    self._spent_payment_methods.add(pm["id"])
            self._emit("customer.deleted", last)
            deleted = shape("deleted_customer")
            deleted["id"] = customer_id
            return deleted

        # Stripe ignores idempotency keys on DELETE: recorded, not honoured.
        args = {"customer_id": customer_id, "idempotency_key": idempotency_key}
        return self._run("delete_customer", args, delete)

    def update_tax_location(self, customer_id: str, *, address: JSONDict, idempotency_key: str) -> JSONDict:
        def update() -> JSONDict:
            customer = self._live_customer(customer_id)
            normalized = self._address(address, None)
            self._validate_tax_location(normalized)
            updated = copy.deepcopy(customer)
            updated["address"] = normalized
            self._customers[customer_id] = updated
            self._emit_update(customer, updated)
            return updated

        args = {"customer_id": customer_id, "address": address, "tax": {"validate_location": "immediately"}}
        return self._run("update_tax_location", args, update, idempotency_key=idempotency_key)

    def _emit_update(self, before: JSONDict, after: JSONDict) -> None:
        """customer.updated, when something changed (previous_attributes: what it was)."""
        previous = changed(before, after)
        if previous:
            self._emit("customer.updated", after, previous)

    def _get_customer(self, customer_id: str) -> JSONDict:
        if customer_id in self._deleted_customers:
            deleted = shape("deleted_customer")
            deleted["id"] = customer_id
            return deleted
        customer = self._customers.get(customer_id)
        if customer is None:
            raise self._missing("customer", customer_id)
        return customer

    def _live_customer(self, customer_id: str) -> JSONDict:
        """A customer that can still be changed: deleted ones are missing to Stripe."""
        customer = self._customers.get(customer_id)
        if customer is None:
            raise self._missing("customer", customer_id)
        return customer

    def _check_email(self, email: object) -> None:
        if email in (None, ""):
            return
        if not isinstance(email, str) or len(email) > 512 or not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
            raise self._error(400, f"Invalid email address: {str(email)[:80]}", code="email_invalid", param="email")

    def _check_tax_exempt(self, tax_exempt: object) -> None:
        if tax_exempt is not None and tax_exempt not in _TAX_EXEMPT:
            raise self._error(400, "Invalid tax_exempt: must be one of none, exempt, or reverse.", param="tax_exempt")

    def _merge_invoice_settings(self, customer_id: str, customer: JSONDict, change: object) -> JSONDict:
        if not isinstance(change, dict):
            raise self._error(400, "Invalid invoice_settings: must be an object.", param="invoice_settings")
        self._check_known(change, _INVOICE_SETTINGS_FIELDS, prefix="invoice_settings")
        settings = copy.deepcopy(customer.get("invoice_settings") or {})
        for key, value in change.items():
            if key == "default_payment_method" and value not in ("", None):
                pm = self._payment_methods.get(str(value))
                if pm is None or pm.get("customer") != customer_id:
                    raise self._error(
                        400,
                        f"The customer does not have a payment method with the ID {value}. "
                        "The payment method must be attached to the customer.",
                        code="resource_missing",
                        param="invoice_settings[default_payment_method]",
                    )
            settings[key] = None if value == "" else value
        return settings

    def _address(self, address: object, current: JSONDict | None) -> JSONDict:
        if not isinstance(address, dict):
            raise self._error(400, "Invalid address: must be an object.", param="address")
        self._check_known(address, ADDRESS_KEYS, prefix="address")
        merged: JSONDict = dict.fromkeys(ADDRESS_KEYS)
        merged.update(current or {})
        merged.update({k: (None if v == "" else v) for k, v in address.items()})
        if isinstance(merged.get("country"), str):
            merged["country"] = merged["country"].strip().upper()
        return merged

    def _validate_tax_location(self, address: JSONDict) -> None:
        """What Stripe Tax needs to place a customer: a real country, and for
        the US a well-formed ZIP code, for Canada a postal code or province."""
        country = address.get("country")
        postal_code = str(address.get("postal_code") or "").strip()
        problem: tuple[str, str] | None = None
        if not country or country not in ISO_3166_ALPHA2:
            problem = ("address[country]", f"'{str(country)[:8]}' is not a valid ISO 3166-1 alpha-2 country code.")
        elif country == "US" and not _US_POSTAL_CODE.fullmatch(postal_code):
            problem = ("address[postal_code]", "A US address needs a valid 5-digit ZIP code (or ZIP+4).")
        elif country == "CA" and not (postal_code or address.get("state")):
            problem = ("address[postal_code]", "A Canadian address needs a postal code or a province.")
        if problem is not None:
            param, detail = problem
            raise self._error(
                400,
                f"The customer's location isn't recognized: {detail}",
                code="customer_tax_location_invalid",
                param=param,
            )
