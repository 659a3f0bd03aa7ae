"""Plug your own model into Tribunal: a worker run inside your own asyncio program."""

import asyncio
from collections.abc import Sequence

from tribunal import ClassifierSpec, Item, Prediction, Settings, load_settings, serve_worker
from tribunal.schemas.tasks import TaskRegistry


class ExclamationClassifier:
    """Calls a text with '!' positive, any other negative: put your model here."""

    model_id = "exclamation-v1"

    async def classify(self, items: Sequence[Item]) -> list[Prediction]:
        return [Prediction("positive" if "!" in item.text else "negative", 0.8) for item in items]

    async def close(self) -> None:
        """Release the model (nothing to release here)."""


def make(spec: ClassifierSpec, tasks: TaskRegistry) -> ExclamationClassifier:
    """The factory behind `--classifier py:examples.custom_classifier:make` (child processes too)."""
    return ExclamationClassifier()


async def main(settings: Settings, stop: asyncio.Event | None = None) -> None:
    # Votes as worker "w1"; returns once `stop` is set (or on Ctrl-C when stop is None).
    await serve_worker(settings, ExclamationClassifier(), stop=stop)


if __name__ == "__main__":
    asyncio.run(main(load_settings(worker={"name": "w1"})))
