"""What Lambda passes the API function's handler, as far as Powertools reads it."""


class Context:
    function_name = "ApiFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ApiFunction"
    aws_request_id = "b1f0b2c4-7b61-11e6-9a41-93e8deadbeef"
