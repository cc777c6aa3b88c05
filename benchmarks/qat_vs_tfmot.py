"""Quantization: tfcompress QAT (Keras 3) vs tfmot QAT (tf_keras) vs post-training int8, in one run.

Part 1, digits CNN (Conv32-Conv64-Dense128-Dense10): one float model is pretrained (Keras 3) and its
weights copied into a tf_keras twin. Then, with the same data, optimizer (Adam 1e-4), batch size and
epochs, four runs are trained with interleaved epochs so machine load hits them alike: plain Keras 3
fine-tuning, tfcompress QAT, plain tf_keras fine-tuning and tfmot QAT. Reported: int8 TFLite top-1 of
each QAT run and of PTQ (the converter's representative-data calibration, and tfcompress.calibrate),
top-1 agreement of each int8 file with its own Keras model, and per-epoch training time relative to
the same framework's plain training (median over epochs after the first).

Part 2, keras.applications MobileNetV3Small (96x96), MobileNetV2 (96x96) and ResNet50 (32x32), all
weights=None with randomised BatchNormalization statistics: quantize -> a few QAT steps on upscaled
digits -> full int8 export with no representative data -> verify (agreement, max error, float ops).

Usage: python benchmarks/qat_vs_tfmot.py [--epochs 5] [--quick] [--digits-only]
Writes benchmarks/results/qat_vs_tfmot.json and prints a table.
"""

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402  (Keras 3 first; tfmot later switches tf.keras to tf_keras)
import numpy as np  # noqa: E402

import tfcompress  # noqa: E402
from _timing import EpochTimer  # noqa: E402  (benchmarks/_timing.py)
from tfcompress.export import export_tflite, run_tflite, verify  # noqa: E402
from tfcompress.quantization import calibrate, quantize  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "qat_vs_tfmot.json")


def cnn(layers_module, sequential, inp):
    L = layers_module
    return sequential([inp((8, 8, 1)), L.Conv2D(32, 3, activation="relu", name="conv1"),
                       L.Conv2D(64, 3, activation="relu", name="conv2"), L.Flatten(name="flatten"),
                       L.Dense(128, activation="relu", name="fc1"), L.Dense(10, name="logits")])


def top1(tflite, x, y):
    return float((run_tflite(tflite, x).argmax(-1) == y).mean())


def digits_part(epochs, pretrain_epochs, batch):
    (x, y), (xt, yt) = tfcompress.load_digits()
    keras.utils.set_random_seed(0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    dense = cnn(keras.layers, keras.Sequential, keras.Input)
    dense.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    dense.fit(x, y, epochs=pretrain_epochs, batch_size=batch, verbose=0)
    weights = dense.get_weights()
    float_tflite, _ = export_tflite(dense)
    ptq_tflite, ptq_report = export_tflite(dense, quantize="int8", representative_data=x[:200])
    ptq_cal = calibrate(quantize(dense), x[:512])
    ptq_cal_tflite, _ = export_tflite(ptq_cal, quantize="int8")

    def k3(m):
        m.compile(keras.optimizers.Adam(1e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
        return m

    k3_plain = k3(keras.models.clone_model(dense))
    k3_plain.set_weights(weights)
    k3_qat = k3(quantize(dense))

    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as tfk

    def tk(m):
        m.compile(tfk.optimizers.Adam(1e-4), tfk.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
        return m

    tfk_dense = cnn(tfk.layers, tfk.Sequential, tfk.Input)
    tfk_dense.set_weights(weights)
    tfk_plain = tk(tfk.models.clone_model(tfk_dense))
    tfk_plain.set_weights(weights)
    tfk_qat = tk(tfmot.quantization.keras.quantize_model(tfk_dense))

    runs = {"k3_plain": k3_plain, "k3_qat": k3_qat, "tfk_plain": tfk_plain, "tfk_qat": tfk_qat}
    timers = {k: EpochTimer(keras.callbacks.Callback if k.startswith("k3") else tfk.callbacks.Callback)
              for k in runs}
    for epoch in range(epochs):
        for name in (list(runs) if epoch % 2 == 0 else list(reversed(runs))):
            runs[name].fit(x, y, epochs=1, batch_size=batch, verbose=0, shuffle=True,
                           callbacks=[timers[name].callback])
        print(f"epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k} {t.times[-1]:.3f}s" for k, t in timers.items()),
              flush=True)
    med = {k: float(np.median(t.times[1:] if len(t.times) > 1 else t.times)) for k, t in timers.items()}

    k3_tflite, k3_report = export_tflite(k3_qat, quantize="int8")
    k3_parity = verify(k3_qat, k3_tflite, xt)
    conv = tf.lite.TFLiteConverter.from_keras_model(tfk_qat)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    tfk_tflite = conv.convert()
    tfk_keras_pred = tfk_qat.predict(xt, verbose=0).argmax(-1)
    tfk_agree = float((run_tflite(tfk_tflite, xt).argmax(-1) == tfk_keras_pred).mean())
    from tfcompress.export import inspect_tflite
    tfk_report = inspect_tflite(tfk_tflite, quantize="int8")

    float_top1 = top1(float_tflite, xt, yt)
    result = {
        "setup": {"data": "sklearn digits 8x8 (1438 train / 359 test)", "architecture": "Conv32-Conv64-Dense128-Dense10",
                  "pretrain_epochs": pretrain_epochs, "qat_epochs": epochs, "batch_size": batch,
                  "optimizer": "Adam(1e-4) for all fine-tuning runs"},
        "float_tflite_top1": float_top1,
        "plain_finetuned_keras3_top1": float((k3_plain.predict(xt, verbose=0).argmax(-1) == yt).mean()),
        "ptq_converter_int8_top1": top1(ptq_tflite, xt, yt),
        "ptq_converter_full_integer": ptq_report.is_full_integer,
        "ptq_tfcompress_calibrate_int8_top1": top1(ptq_cal_tflite, xt, yt),
        "ptq_tfcompress_calibrate_agreement": verify(ptq_cal, ptq_cal_tflite, xt).top1_agreement,
        "tfcompress": {"int8_top1": top1(k3_tflite, xt, yt), "agreement_with_keras": k3_parity.top1_agreement,
                       "max_abs_error": k3_parity.max_abs_error, "full_integer": k3_report.is_full_integer,
                       "bytes": len(k3_tflite), "epoch_seconds_plain": med["k3_plain"],
                       "epoch_seconds_qat": med["k3_qat"], "overhead": med["k3_qat"] / med["k3_plain"],
                       "epoch_times_plain": timers["k3_plain"].times, "epoch_times_qat": timers["k3_qat"].times},
        "tfmot": {"int8_top1": top1(tfk_tflite, xt, yt), "agreement_with_keras": tfk_agree,
                  "full_integer": tfk_report.is_full_integer, "bytes": len(tfk_tflite),
                  "epoch_seconds_plain": med["tfk_plain"], "epoch_seconds_qat": med["tfk_qat"],
                  "overhead": med["tfk_qat"] / med["tfk_plain"],
                  "epoch_times_plain": timers["tfk_plain"].times, "epoch_times_qat": timers["tfk_qat"].times},
    }
    result["tfcompress"]["int8_minus_float_points"] = 100 * (result["tfcompress"]["int8_top1"] - float_top1)
    return result


def randomise_bn(model, rng):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            s = [w.shape for w in layer.get_weights()]
            layer.set_weights([rng.uniform(0.5, 1.5, s[0]), rng.normal(0, 0.2, s[1]),
                               rng.normal(0, 0.2, s[2]), rng.uniform(0.5, 1.5, s[3])])


def big_models_part(steps, quick):
    rng = np.random.default_rng(0)
    specs = [
        ("MobileNetV3Small(96x96)", lambda: keras.applications.MobileNetV3Small(
            weights=None, input_shape=(96, 96, 3), include_preprocessing=False, classes=10,
            classifier_activation=None), 12),
        ("MobileNetV2(96x96, alpha=1.0)", lambda: keras.applications.MobileNetV2(
            weights=None, input_shape=(96, 96, 3), classes=10, classifier_activation=None), 12),
        ("ResNet50(32x32)", lambda: keras.applications.ResNet50(
            weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None), 4),
    ]
    if quick:
        specs = specs[:1]
    rows = []
    for name, build, upscale in specs:
        keras.utils.set_random_seed(0)
        (x, y), (xt, _) = tfcompress.load_digits(upscale=upscale)
        x, xt = np.repeat(x, 3, -1)[:256], np.repeat(xt, 3, -1)[:128]
        y = y[:256]
        model = build()
        randomise_bn(model, rng)
        t0 = time.perf_counter()
        qat = quantize(model)
        t1 = time.perf_counter()
        qat.compile(keras.optimizers.Adam(1e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        qat.fit(x, y, epochs=1, batch_size=256 // steps, verbose=0)
        t2 = time.perf_counter()
        tflite, report = export_tflite(qat, quantize="int8")
        t3 = time.perf_counter()
        parity = verify(qat, tflite, xt)
        out_range = float(np.ptp(qat.predict(xt, verbose=0)))
        rows.append({"model": name, "params": int(model.count_params()), "qat_steps": steps,
                     "full_integer": report.is_full_integer, "float_ops": report.float_ops,
                     "ops": report.op_histogram, "int8_bytes": report.size_bytes,
                     "agreement": parity.top1_agreement, "max_abs_error": parity.max_abs_error,
                     "mean_abs_error": parity.mean_abs_error, "keras_output_range": out_range,
                     "seconds_quantize": t1 - t0, "seconds_qat": t2 - t1, "seconds_export": t3 - t2})
        print(rows[-1]["model"], {k: v for k, v in rows[-1].items() if k not in ("ops",)}, flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    parser.add_argument("--steps", type=int, default=4, help="QAT steps for the big models")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--digits-only", action="store_true",
                        help="rerun part 1 only; keep part 2 from the existing JSON")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.pretrain_epochs = 2, 3
    result = {"machine": {"python": platform.python_version(), "keras": keras.__version__,
                          "processor": platform.processor() or platform.machine()}}
    if args.digits_only and os.path.exists(RESULTS):
        with open(RESULTS) as f:
            result["big_models"] = json.load(f)["big_models"]
    else:
        result["big_models"] = big_models_part(args.steps, args.quick)
    result["digits"] = digits_part(args.epochs, args.pretrain_epochs, batch=32)
    d = result["digits"]
    print("\n| digits CNN | int8 TFLite top-1 | agreement with Keras | QAT epoch / plain epoch |")
    print("|---|---:|---:|---:|")
    print(f"| float (TFLite float32) | {d['float_tflite_top1']:.4f} | - | - |")
    print(f"| PTQ (converter, 200 samples) | {d['ptq_converter_int8_top1']:.4f} | - | - |")
    print(f"| PTQ (tfcompress.calibrate) | {d['ptq_tfcompress_calibrate_int8_top1']:.4f} | "
          f"{d['ptq_tfcompress_calibrate_agreement']:.4f} | - |")
    for key, label in (("tfcompress", "tfcompress QAT (Keras 3)"), ("tfmot", "tfmot QAT (tf_keras)")):
        r = d[key]
        print(f"| {label} | {r['int8_top1']:.4f} | {r['agreement_with_keras']:.4f} | {r['overhead']:.2f}x |")
    print("\n| model | full int8 | agreement | max abs err | output range | export s |")
    print("|---|---|---:|---:|---:|---:|")
    for r in result["big_models"]:
        print(f"| {r['model']} | {r['full_integer']} | {r['agreement']:.4f} | {r['max_abs_error']:.4f} | "
              f"{r['keras_output_range']:.3f} | {r['seconds_export']:.1f} |")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(result, f, indent=2, default=float)
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
