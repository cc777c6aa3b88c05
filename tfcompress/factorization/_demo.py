"""Demo rows of distillation, factorization and clustering (see tfcompress/demo.py)."""

import gzip


def demo_rows(ctx):
    """Three rows: the CNN factorized at energy 0.9, clustered to 16 values, and a distilled student.

    Each model is briefly fine-tuned (1 epoch with `ctx.quick`) and exported as float32; the
    clustered row's gain shows in `gzip_bytes`, the student's in size and latency.
    """
    import keras

    from tfcompress.clustering import cluster
    from tfcompress.distillation import Distiller, SoftTargetLoss
    from tfcompress.factorization import factorize

    epochs = 1 if ctx.quick else max(2, ctx.epochs // 3)
    rows = []

    small, _ = factorize(ctx.model, energy=0.9)
    ctx.compile_and_fit(small, epochs=epochs, optimizer=keras.optimizers.Adam(1e-4))
    rows.append(ctx.measure("factorized energy 0.9", small))

    clustered = cluster(ctx.model, n_clusters=16)
    ctx.compile_and_fit(clustered, epochs=epochs, optimizer=keras.optimizers.Adam(1e-4))
    rows.append(ctx.measure("clustered 16", clustered))

    student = keras.Sequential([
        keras.Input(ctx.x_train.shape[1:]),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ], name="student")
    # The demo CNN ends in a softmax: the soft-target loss takes probabilities.
    distiller = Distiller(ctx.model, student, loss=SoftTargetLoss(2.0, from_logits=False), alpha=0.5)
    distiller.compile(keras.optimizers.Adam(1e-3))
    distiller.fit(ctx.x_train, ctx.y_train, batch_size=32, epochs=1 if ctx.quick else ctx.epochs, verbose=0)
    rows.append(ctx.measure("distilled student int8", student, quantize="int8"))

    for row in rows:
        with open(row["path"], "rb") as f:
            row["gzip_bytes"] = len(gzip.compress(f.read(), 9))
    return rows
