"""Demo row of quantization-aware training (see tfcompress/demo.py)."""


def demo_rows(ctx):
    """QAT fine-tuning of the trained digits CNN, exported full-int8 with its own trained ranges."""
    import keras

    from tfcompress.quantization import quantize

    qat = quantize(ctx.model)
    ctx.compile_and_fit(qat, epochs=1 if ctx.quick else max(2, ctx.epochs // 4),
                        optimizer=keras.optimizers.Adam(1e-4))
    # representative_data=None: the fake-quant ranges learnt in training replace calibration
    return [ctx.measure("QAT int8", qat, quantize="int8", representative_data=None)]
