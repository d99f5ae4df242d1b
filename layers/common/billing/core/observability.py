"""One Logger, Tracer and Metrics per process, shared by every module.

Service name and namespace come from POWERTOOLS_SERVICE_NAME and
POWERTOOLS_METRICS_NAMESPACE, which template.yaml sets per function.
"""

import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()

# Many invocations (health, reads) publish no metric; Powertools warns on
# each of those, which buries the log lines that matter.
warnings.filterwarnings("ignore", message="No application metrics to publish")
