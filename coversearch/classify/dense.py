"""The study's dense head: 256 ReLU units, dropout, softmax; RMSprop 1e-4, cross-entropy.

Early stopping watches the validation split and restores the best weights.  Inputs are
standardised with training-set statistics (kept with the model).  ``power`` < 1 first applies a
signed power (0.5 = square root), which evens out CNN activations whose few large values would
otherwise dominate; the study's recipe leaves it at 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coversearch.classify.base import ClassifierBase, ProgressFn, Standardizer, check_param
from coversearch.features.vgg16 import import_keras


class DenseGenre(ClassifierBase):
    method = "dense"
    uses_validation = True  # early stopping on validation loss
    progress_unit = "epoch"

    def __init__(self, hidden: int = 256, dropout: float = 0.5, learning_rate: float = 1e-4, epochs: int = 200,
                 batch_size: int = 32, patience: int = 15, l2: float = 0.0, standardize: bool = True,
                 power: float = 1.0, seed: int = 0):
        for key, value, kind, low, high, above in (
            ("hidden", hidden, int, 1, None, False),
            ("learning_rate", learning_rate, float, 0, None, True), ("epochs", epochs, int, 1, None, False),
            ("batch_size", batch_size, int, 1, None, False), ("patience", patience, int, 0, None, False),
            ("l2", l2, float, 0, None, False), ("power", power, float, 0, None, True), ("seed", seed, int, 0, None, False),
        ):
            check_param(self.method, key, value, kind, low, high, above=above)
        check_param(self.method, "dropout", dropout, float, 0, 1, below=True)
        check_param(self.method, "standardize", standardize, bool)
        self.hidden = hidden
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.patience = patience
        self.l2 = l2
        self.standardize = standardize
        self.power = power
        self.seed = seed

    def _build(self, dim: int):
        keras = import_keras()
        keras.utils.set_random_seed(self.seed)
        reg = keras.regularizers.L2(self.l2) if self.l2 else None
        model = keras.Sequential([
            keras.Input((dim,)),
            keras.layers.Dense(self.hidden, activation="relu", kernel_regularizer=reg),
            keras.layers.Dropout(self.dropout),
            keras.layers.Dense(len(self.classes_), activation="softmax", kernel_regularizer=reg),
        ])
        model.compile(optimizer=keras.optimizers.RMSprop(self.learning_rate), loss="categorical_crossentropy",
                      metrics=["accuracy"])
        return model

    def _powered(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        return X if self.power == 1 else (np.sign(X) * np.abs(X) ** self.power).astype(np.float32)

    def _inputs(self, X) -> np.ndarray:
        X = self._powered(X)
        return self.scaler_.transform(X) if self.scaler_ is not None else X

    def fit(self, X, y, X_val=None, y_val=None, progress: ProgressFn | None = None) -> "DenseGenre":
        keras = import_keras()
        labels = self._set_classes(np.asarray(y))
        self.scaler_ = Standardizer().fit(self._powered(X)) if self.standardize else None
        self.model_ = self._build(X.shape[1])
        n = len(self.classes_)
        one_hot = np.eye(n, dtype=np.float32)
        callbacks = []
        validation = None
        if X_val is not None and len(X_val):
            validation = (self._inputs(X_val), one_hot[self._encode(np.asarray(y_val))])
            callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=self.patience,
                                                           restore_best_weights=True))
        if progress:
            callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: progress(epoch + 1, self.epochs)))
        history = self.model_.fit(self._inputs(X), one_hot[labels], validation_data=validation, epochs=self.epochs,
                                  batch_size=self.batch_size, shuffle=True, verbose=0, callbacks=callbacks)
        self.epochs_run_ = len(history.history["loss"])
        # Early stopping restores the weights of the best validation epoch, but only when it stopped.
        stopped = validation is not None and self.epochs_run_ < self.epochs
        self.best_epoch_ = int(np.argmin(history.history["val_loss"])) + 1 if stopped else self.epochs_run_
        return self

    def validation_choices(self) -> dict[str, Any]:
        return {"epochs": self.best_epoch_}

    def predict_proba(self, X) -> np.ndarray:
        return np.asarray(self.model_.predict(self._inputs(X), batch_size=256, verbose=0))

    def save(self, folder: Path) -> None:
        self.model_.save(folder / "head.keras")
        if self.scaler_ is not None:
            np.savez(folder / "scaler.npz", **self.scaler_.state())
        self.save_meta(folder, epochs_run=self.epochs_run_, best_epoch=self.best_epoch_)

    @classmethod
    def load(cls, folder: Path) -> "DenseGenre":
        keras = import_keras()
        self, meta = cls.load_meta(folder)
        self.epochs_run_ = meta["epochs_run"]
        self.best_epoch_ = meta.get("best_epoch", self.epochs_run_)  # absent from models saved before refitting existed
        self.model_ = keras.models.load_model(folder / "head.keras")
        self.scaler_ = Standardizer.from_state(np.load(folder / "scaler.npz")) if (folder / "scaler.npz").exists() else None
        return self
