"""AWS's public on-demand prices (us-east-1) and the dollars per million
usage events they make of the benchmark's measured figures.

The prices are dated: they were read from AWS's pricing pages on the day
below, and change over time. Stripe bills Billing by revenue, not per API
request, so Stripe requests are counted but not priced. DynamoDB Streams
reads made by Lambda's event source mappings are free; the tables' storage
and PITR are left out (they grow with what is kept, not with traffic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

PRICES_READ_ON: Final = "2026-11-30"


@dataclass(frozen=True)
class Price:
    dollars: float  # per unit
    unit: str
    source: str


PRICES: Final = {
    # DynamoDB on-demand, Standard table class (since AWS's 2024-11-01 price cut).
    "dynamodb_write_unit": Price(0.625 / 1e6, "write request unit",
                                 "aws.amazon.com/dynamodb/pricing/on-demand: $0.625 per million WRU"),
    "dynamodb_read_unit": Price(0.125 / 1e6, "read request unit",
                                "aws.amazon.com/dynamodb/pricing/on-demand: $0.125 per million RRU"),
    # REST APIs (the template's AWS::Serverless::Api), first 333 million a month.
    "api_gateway_request": Price(3.50 / 1e6, "REST API request",
                                 "aws.amazon.com/api-gateway/pricing: $3.50 per million (first 333M/month)"),
    "lambda_request": Price(0.20 / 1e6, "Lambda request", "aws.amazon.com/lambda/pricing: $0.20 per million"),
    # arm64 (the template's Architectures), first 7.5 billion GB-s a month.
    "lambda_arm64_gb_second": Price(0.0000133334, "GB-second (arm64)",
                                    "aws.amazon.com/lambda/pricing: $0.0000133334 per GB-s (first 7.5B/month)"),
}


@dataclass(frozen=True)
class PerEvent:
    """What one usage event costs, end to end (accepted and reported)."""

    write_units: float
    read_units: float
    api_requests: float
    lambda_invocations: float
    lambda_gb_seconds: float

    def dollars_per_million(self) -> dict[str, float]:
        million = 1e6
        parts = {
            "DynamoDB writes": self.write_units * PRICES["dynamodb_write_unit"].dollars * million,
            "DynamoDB reads": self.read_units * PRICES["dynamodb_read_unit"].dollars * million,
            "API Gateway": self.api_requests * PRICES["api_gateway_request"].dollars * million,
            "Lambda requests": self.lambda_invocations * PRICES["lambda_request"].dollars * million,
            "Lambda duration": self.lambda_gb_seconds * PRICES["lambda_arm64_gb_second"].dollars * million,
        }
        parts["total"] = sum(parts.values())
        return parts


def price_rows() -> list[dict[str, object]]:
    """The prices used, as benchmark rows (so every run prints them with their date)."""
    return [{"benchmark": "prices", "metric": f"{price.unit} ({price.source})",
             "value": f"{price.dollars * 1e6:.4f}", "unit": f"$ per million, read {PRICES_READ_ON}"}
            for price in PRICES.values()]
