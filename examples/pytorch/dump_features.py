"""Dump a PyTorch model's tap features for `rf certify --matrix` (documented, not run in CI).

    python3 examples/pytorch/dump_features.py            # writes features.npy and features.safetensors
    rf certify --matrix features.npy                     # bias column on by default (as on the model path)
    rf certify --matrix features.safetensors --tensor phi

The certificate proves EC for the matrix in the file (docs/theory.md §3): rows = the n training inputs,
columns = the flattened outputs of the tap layers concatenated in tap order (h(x) of SPEC §1), exactly
as the model computes them in evaluation mode. Keep float32 or float64 as the model runs; rf reads both.
Replace `model`, `taps` and `inputs` below with yours. Needs numpy and torch; safetensors is optional.
"""
import numpy as np
import torch

torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Linear(784, 256), torch.nn.Tanh(),   # "1" is the tap below: the tanh output
    torch.nn.Linear(256, 10),
)
taps = ["1"]                                      # names from model.named_modules()
inputs = torch.randn(200, 784)                    # your n training inputs (n ≤ features + 1 for EC to hold)

captured = {}
modules = dict(model.named_modules())
hooks = [modules[name].register_forward_hook(lambda m, i, out, name=name: captured.__setitem__(name, out.flatten(1)))
         for name in taps]
model.eval()                                      # BatchNorm/Dropout as at the switch (SPEC §4.2)
rows = []
with torch.no_grad():
    for batch in torch.split(inputs, 64):         # stream the inputs; only the features are kept
        captured.clear()
        model(batch)
        rows.append(torch.cat([captured[name] for name in taps], dim=1))
for h in hooks:
    h.remove()
phi = torch.cat(rows).contiguous()                # n × m, the feature matrix Φ (rf appends the bias column)

np.save("features.npy", phi.numpy())              # little-endian C-order .npy, float32 here
try:
    from safetensors.torch import save_file
    save_file({"phi": phi}, "features.safetensors")
except ImportError:
    print("safetensors not installed: wrote features.npy only")
print(f"Φ: {phi.shape[0]} × {phi.shape[1]} {phi.dtype}; now: rf certify --matrix features.npy")
