"""What the commands print where: standard output holds a command's own report, nothing else."""

from __future__ import annotations

import json

from libs.cli import main
from tests.fakes.judged_store import END, judge_coins


def test_poll_prints_its_report_on_stdout_and_the_functions_metric_lines_on_stderr(
    store, sqs, sqs_endpoint, queues, capsys
):
    # given two requests on the queue for judged coins
    judge_coins(store, ("coin-a", "coin-b"))
    for coin in ("coin-a", "coin-b"):
        sqs.send_message(QueueUrl=queues.url, MessageBody=json.dumps({"coin_ids": [coin], "as_of": END.isoformat()}))
    capsys.readouterr()

    # when poll runs them through the function
    queue = ["--queue-url", queues.url, "--endpoint-url", sqs_endpoint.url]
    status = main(["poll", *queue, "--until-empty", "--wait-seconds", "0"])

    # then stdout is the poller's one line, and the function's EMF metric lines went to stderr
    captured = capsys.readouterr()
    assert status == 0
    assert captured.out.splitlines() == [
        "1 batches, 2 deliveries: 2 processed and deleted, 0 failed (left to the queue's redrive policy), "
        "0 delete errors (queue drained)"
    ]
    metrics = [json.loads(line) for line in captured.err.splitlines() if line.startswith('{"_aws"')]
    assert metrics and {"MessagesProcessed"} <= {name for m in metrics for name in m}
