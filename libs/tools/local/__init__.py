"""The local pipeline (contract §8): the system as it runs in AWS, on one machine.

A real SQS API on loopback (moto's server) with the queue and DLQ that
``serverless.yml`` declares, a poller that plays Lambda's event source mapping,
the producer, and the plot. Nothing here is on the Lambda path.
"""
