"""Cross-check PeftDsl against Hugging Face PEFT, both ways, on a tiny model.

  python3 peft_interop.py write OUT   PEFT writes one adapter per method, with the base weights, an input and
                                      PEFT's outputs (unmerged and merged): PeftDsl's tests load these.
  python3 peft_interop.py check DIR   PEFT loads each adapter PeftDsl wrote (DIR/<case>/adapter + base.safetensors
                                      + reference.safetensors; or DIR/<case> itself, as `write` lays it out) and
                                      compares its output with the reference's.

Each prints one line per case and a count of failures, and exits 1 when any case failed.

The model is the same on both sides: q = Linear(16, 24), v = Linear(16, 16), f = Linear(16, 16),
head = Linear(56, 5); y = head(cat(q(x), v(x), f(x))). Adapters target q, v (and f); head is modules_to_save.
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file
import peft

torch.manual_seed(0)


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.q = torch.nn.Linear(16, 24)
        self.v = torch.nn.Linear(16, 16)
        self.f = torch.nn.Linear(16, 16)
        self.head = torch.nn.Linear(56, 5)

        # torch < 2.0 has no Module._backward_pre_hooks, which PEFT's SHiRA forward reads (only to warn about hooks
        # it would skip): an empty one, as torch 2.x has, lets that check run on the Debian torch 1.13 here.
        for layer in (self.q, self.v, self.f, self.head):
            if not hasattr(layer, "_backward_pre_hooks"):
                layer._backward_pre_hooks = {}

    def forward(self, x):
        return self.head(torch.cat([self.q(x), self.v(x), self.f(x)], dim=-1))


TARGETS = ["q", "v", "f"]


def configs():
    """Each case as a factory, so a PEFT without one method still runs the others."""
    return {
        "lora": lambda: peft.LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, modules_to_save=["head"]),
        "lora-rslora": lambda: peft.LoraConfig(r=4, lora_alpha=8, use_rslora=True, target_modules=TARGETS),
        "dora": lambda: peft.LoraConfig(r=4, lora_alpha=8, use_dora=True, target_modules=TARGETS),
        "miss": lambda: peft.MissConfig(r=4, target_modules=TARGETS),
        "miss-bat": lambda: peft.MissConfig(r=4, init_weights="bat", target_modules=TARGETS),
        "vera": lambda: peft.VeraConfig(r=4, target_modules=TARGETS, save_projection=True),
        "loha": lambda: peft.LoHaConfig(r=4, alpha=8, target_modules=TARGETS),
        "lokr": lambda: peft.LoKrConfig(r=4, alpha=8, target_modules=TARGETS),
        "ia3": lambda: peft.IA3Config(target_modules=TARGETS, feedforward_modules=["f"]),
        # PeftDsl's [SaRA(2)] saves in this format (PEFT draws a random mask; the file's indices travel with it).
        "shira": lambda: peft.ShiraConfig(r=2, target_modules=TARGETS),
    }


def randomise(model):
    """Moves every adapter off its identity start, so loading the wrong tensor cannot pass unnoticed."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            noise = torch.randn(p.shape, generator=g) * 0.1
            if "magnitude" in name or "ia3_l" in name or "lambda" in name:
                p.copy_(1 + noise)
            elif "miss_block" in name or "bone_block" in name:
                p.copy_(noise * 0.3)
            else:
                p.copy_(noise)


def close(y, reference):
    """The error and whether it is within float32 rounding of the reference's size."""
    err = (y - reference).abs().max().item()
    return err, err <= 1e-4 * (1 + reference.abs().max().item())


def write(out):
    """One line per case; returns how many cases failed (no adapter tensors written, or merging changed the output)."""
    os.makedirs(out, exist_ok=True)
    failures = 0
    for case, make_config in configs().items():
        try:
            config = make_config()
        except AttributeError as e:
            print(f"{case}: skipped, this PEFT has no such config ({e})")
            continue
        try:
            torch.manual_seed(0)
            base = Tiny()
            base_state = {k: v.clone().contiguous() for k, v in base.state_dict().items()}
            model = peft.get_peft_model(base, config)
            randomise(model)
            model.eval()
            x = torch.randn(3, 16, generator=torch.Generator().manual_seed(2))
            folder = os.path.join(out, case)
            # Save before merging: merge_and_unload() folds the adapters into the base layers and removes them, so an
            # adapter saved after it holds no tensors.
            model.save_pretrained(folder)  # the adapter: adapter_config.json + adapter_model.safetensors
            tensors = len(load_file(os.path.join(folder, "adapter_model.safetensors")))
            with torch.no_grad():
                y = model(x)
                merged = model.merge_and_unload()(x)
            save_file(base_state, os.path.join(folder, "base.safetensors"))
            save_file({"x": x, "y": y, "y_merged": merged}, os.path.join(folder, "reference.safetensors"))
            err, ok = close(merged, y)
            ok = ok and tensors > 0
            failures += not ok
            print(f"{case}: wrote {tensors} adapter tensors; max |y - y_merged| = {err:.2e} {'OK' if ok else 'MISMATCH'}")
        except Exception as e:  # report every case, then fail
            failures += 1
            print(f"{case}: FAILED to write: {type(e).__name__}: {e}")
    with open(os.path.join(out, "VERSIONS.json"), "w") as f:
        json.dump({"peft": peft.__version__, "torch": torch.__version__}, f, indent=2)
    print(f"{failures} failed")
    return failures


def check(directory):
    """PEFT loads each case's adapter (DIR/<case>/adapter, or DIR/<case> itself as `write` lays it out) and must
    reproduce reference.safetensors' y. One line per case; returns how many failed."""
    failures = 0
    cases = 0
    for case in sorted(os.listdir(directory)):
        folder = os.path.join(directory, case)
        if not os.path.isdir(folder):
            continue
        cases += 1
        try:
            adapter = os.path.join(folder, "adapter")
            if not os.path.isdir(adapter):
                adapter = folder
            tensors = len(load_file(os.path.join(adapter, "adapter_model.safetensors")))
            base = Tiny()
            base.load_state_dict(load_file(os.path.join(folder, "base.safetensors")))
            model = peft.PeftModel.from_pretrained(base, adapter)
            model.eval()
            ref = load_file(os.path.join(folder, "reference.safetensors"))
            with torch.no_grad():
                y = model(ref["x"])
            err, ok = close(y, ref["y"])
            ok = ok and tensors > 0
            failures += not ok
            print(f"{case}: PEFT {peft.__version__} loaded {tensors} adapter tensors; max |y_peft - y_reference| = {err:.2e} {'OK' if ok else 'MISMATCH'}")
        except Exception as e:  # report every case, then fail
            failures += 1
            print(f"{case}: FAILED to load: {type(e).__name__}: {e}")
    if cases == 0:
        print(f"no case folders in {directory}")
        failures += 1
    print(f"{failures} failed")
    return failures


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "check"):
        sys.exit(__doc__)
    failed = write(sys.argv[2]) if sys.argv[1] == "write" else check(sys.argv[2])
    sys.exit(1 if failed else 0)
