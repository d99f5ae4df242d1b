"""One Logger, Tracer and Metrics per process, shared by every module.

Service name and namespace come from POWERTOOLS_SERVICE_NAME and
POWERTOOLS_METRICS_NAMESPACE, which template.yaml sets per function. The
Tracer is what the DetailedTracing parameter asks for (billing.core.tracing):
without it, the X-Ray SDK is never imported.
"""

import warnings

from aws_lambda_powertools import Logger, Metrics

from billing.core.tracing import build_tracer

logger = Logger()
tracer = build_tracer()
metrics = Metrics()

# Many invocations (health, reads) publish no metric; Powertools warns on
# each of those, which buries the log lines that matter.
warnings.filterwarnings("ignore", message="No application metrics to publish")
