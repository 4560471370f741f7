"""The callbacks every training run has: checkpoints, the backup `--resume` reads, history (with the
learning rate), early stopping that resumes its count, and clean stops on Ctrl-C and on a loss that
is no number."""

from __future__ import annotations

import logging
import signal
import threading

import keras
import numpy as np

from ferkit.runs import RunDir
from ferkit.training.config import TrainConfig

log = logging.getLogger("ferkit")


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """Keras' own stop at the first batch whose loss is not finite, remembering its epoch: every
    step after it is NaN too, and a model of NaN weights labels every face with the first class, so
    its scores would read like a poor model's instead of a diverged one's."""

    epoch, current = 0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch + 1

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if not self.epoch and loss is not None and not np.isfinite(float(loss)):
            self.epoch = self.current
        super().on_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        """The epoch that diverged scores no number, for the callbacks after this one (it goes first):
        its NaN network's val_accuracy, the first class's share, had beaten the earlier epochs', and
        the checkpoint had kept NaN weights in place of the best finite ones. An epoch whose last
        step made the weights NaN logged a finite training loss (computed before that step), but
        its validation loss is not finite: diverged too."""
        logs = logs if logs is not None else {}
        if not self.epoch and not all(np.isfinite(float(logs.get(key, 0.0))) for key in ("loss", "val_loss")):
            self.epoch = epoch + 1
            self.model.stop_training = True
        if self.epoch == epoch + 1:
            logs.update((key, float("nan")) for key in logs)


class StopOnCtrlC(keras.callbacks.Callback):
    """The first Ctrl-C ends training after the current batch; a second one stops at once.

    Ending through `stop_training` works on every backend, whereas a KeyboardInterrupt raised
    inside JAX can be swallowed (jax-ml/jax#18246: training went on after SIGINT here). The cut
    epoch is validated and checkpointed like a whole one, so `--resume` starts after it.
    """

    def __init__(self):
        super().__init__()
        self.requested = False
        self._previous = None
        self._saving = self._pending = False
        self._finishing = self._waiting = False

    def saves_begin(self) -> keras.callbacks.Callback:
        """A callback to go before the checkpoints: from its epoch end to this one's, they and the backup
        are written, and a second Ctrl-C waits for them. Keras writes them in place, and an
        impatient second press there had left a cut file: the best weights lost, or no resume."""
        return keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: setattr(self, "_saving", True))

    def on_epoch_end(self, epoch, logs=None):
        self._saving = False
        if self._pending:
            raise KeyboardInterrupt

    def on_train_begin(self, logs=None):
        self._install()

    def finishing(self) -> None:
        """Once training has ended: the best weights are loaded, BatchNorm statistics recomputed, the
        test faces scored and the run saved, and a first Ctrl-C (or the SIGTERM of a deadline, which
        the CLI takes as one) waits for that. It had raised at once and lost the finished run, leaving
        a checkpoint with the optimizer's state, seven times the size of the weights alone. A second
        press still stops at once."""
        self._finishing = True
        self._install()

    def restore(self) -> None:
        """Give Ctrl-C back to its previous handler (also when training ended by an exception)."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _install(self) -> None:
        if self._previous is None and threading.current_thread() is threading.main_thread():  # signals reach it only
            self._previous = signal.signal(signal.SIGINT, self._handle)

    @property
    def asked_while_finishing(self) -> bool:
        return self._waiting

    def _handle(self, signum, frame):
        said = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name  # the CLI's SIGTERM too
        if self._finishing:
            if self._waiting:
                raise KeyboardInterrupt
            self._waiting = True
            log.warning("%s: finishing the run first (its best weights, BatchNorm statistics, test faces, "
                        "saving); another Ctrl-C stops at once", said)
            return
        if self.requested and self._saving:
            self._pending = True
            log.warning("%s: stopping once this epoch's checkpoints are written", said)
            return
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.model.stop_training = True
        log.warning("%s: stopping after this batch (another Ctrl-C stops at once)", said)


class LogLearningRate(keras.callbacks.Callback):
    """The learning rate the schedule reached at each epoch's end, in the epoch's logs and so in
    history.csv: a warm-up and cosine decay can then be seen, not only read in the recipe."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def run_callbacks(config: TrainConfig, run: RunDir, resume: bool) -> list[keras.callbacks.Callback]:
    monitor = config.checkpoint_on
    # Before the CSV logger that writes it; not in a resumed run whose history.csv was begun without
    # the column, whose rows would outgrow their header
    logged = [LogLearningRate()] if not resume or "learning_rate" in _history_header(run) else []
    callbacks = [
        *logged,
        keras.callbacks.CSVLogger(run.history, append=resume),
        # Kept when fit ends: after a first Ctrl-C it ends normally, and Keras' own clean-up
        # would delete what --resume needs (train() deletes it once the finished model is saved).
        # The backup before the last is kept too: a kill while the last was written (the session's
        # end, the OOM killer) had left a cut file and nothing to resume
        keras.callbacks.BackupAndRestore(run.backup, delete_checkpoint=False, double_checkpoint=True),
        # After the backup, so that the best weights are never of an epoch a resume trains again: written
        # first, a kill before the backup had kept weights that history.csv had no row for
        # (RunDir.repair_history); a kill between the two is mended from the backup (RunDir.best_from_backup)
        keras.callbacks.ModelCheckpoint(run.best_weights, monitor=monitor, save_best_only=True,
                                        save_weights_only=True,
                                        initial_value_threshold=run.best_epoch(monitor)[1] if resume else None),
    ]
    if config.early_stopping:
        callbacks.append(ResumedEarlyStopping(run if resume else None, monitor=monitor, patience=config.early_stopping))
    return callbacks


def _history_header(run: RunDir) -> list[str]:
    try:
        with open(run.history, encoding="utf-8") as handle:
            return handle.readline().strip().split(",")
    except (OSError, UnicodeDecodeError):
        return []


class ResumedEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' own, counting the epochs without improvement from the run's history.csv: on --resume
    it started afresh, and a run one epoch from stopping trained `patience` more."""

    def __init__(self, resumed: RunDir | None, **kwargs):
        super().__init__(**kwargs)
        self.resumed = resumed

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        epoch, value = self.resumed.best_epoch(self.monitor) if self.resumed else (None, None)
        if epoch is not None:
            self.best, self.wait = value, (self.resumed.history_rows() or epoch) - epoch
