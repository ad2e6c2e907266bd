"""The ``stream-engine`` command. Thin: parse options, call the layers, print.

``options`` holds what every command shares, ``offline`` the commands that need no broker,
``kafka`` the ones that run or feed a pipeline, ``api`` the HTTP API's, ``admin`` its topics
and dead letters, ``render`` what they print. Heavy imports stay inside the commands:
``stream-engine --help`` loads neither aiokafka nor faust.
"""

from __future__ import annotations

import click

from stream_engine import __version__
from stream_engine.cli import admin, api, kafka, offline
from stream_engine.cli.render import err, out


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="stream-engine")
def main() -> None:
    """stream-engine: a Kafka-native, configuration-driven, multi-stage rule engine.

    A pipeline file (YAML) groups rules into stages; each stage runs as a Kafka agent. The
    offline commands (validate, plan, eval, test) need no broker.
    """


for _command in (*offline.COMMANDS, *kafka.COMMANDS, *api.COMMANDS, *admin.COMMANDS):
    main.add_command(_command)

__all__ = ["err", "main", "out"]
