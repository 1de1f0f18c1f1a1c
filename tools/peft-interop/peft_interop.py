"""Cross-check PeftDsl against Hugging Face PEFT, both ways, on a tiny model.

  python3 peft_interop.py write OUT   PEFT writes one adapter per method, with the base weights, an input and
                                      PEFT's outputs (unmerged and merged): PeftDsl's tests load these.
  python3 peft_interop.py check DIR   PEFT loads each adapter PeftDsl wrote (DIR/<case>/adapter + base.safetensors
                                      + reference.safetensors) and compares its output with PeftDsl's.

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


def write(out):
    os.makedirs(out, exist_ok=True)
    for case, make_config in configs().items():
        try:
            config = make_config()
        except AttributeError as e:
            print(f"{case}: skipped, this PEFT has no such config ({e})")
            continue
        torch.manual_seed(0)
        base = Tiny()
        base_state = {k: v.clone().contiguous() for k, v in base.state_dict().items()}
        model = peft.get_peft_model(base, config)
        randomise(model)
        model.eval()
        x = torch.randn(3, 16, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            y = model(x)
            merged = model.merge_and_unload()(x)
        folder = os.path.join(out, case)
        model.save_pretrained(folder)  # the adapter: adapter_config.json + adapter_model.safetensors
        save_file(base_state, os.path.join(folder, "base.safetensors"))
        save_file({"x": x, "y": y, "y_merged": merged}, os.path.join(folder, "reference.safetensors"))
        print(f"{case}: wrote {sorted(os.listdir(folder))}, |y - y_merged| = {(y - merged).abs().max():.2e}")
    with open(os.path.join(out, "VERSIONS.json"), "w") as f:
        json.dump({"peft": peft.__version__, "torch": torch.__version__}, f, indent=2)


def check(directory):
    failures = 0
    for case in sorted(os.listdir(directory)):
        folder = os.path.join(directory, case)
        if not os.path.isdir(folder):
            continue
        try:
            base = Tiny()
            base.load_state_dict(load_file(os.path.join(folder, "base.safetensors")))
            model = peft.PeftModel.from_pretrained(base, os.path.join(folder, "adapter"))
            model.eval()
            ref = load_file(os.path.join(folder, "reference.safetensors"))
            with torch.no_grad():
                y = model(ref["x"])
            err = (y - ref["y"]).abs().max().item()
            ok = err <= 1e-4 * (1 + ref["y"].abs().max().item())
            failures += not ok
            print(f"{case}: PEFT {peft.__version__} loaded PeftDsl's adapter; max |y_peft - y_peftdsl| = {err:.2e} {'OK' if ok else 'MISMATCH'}")
        except Exception as e:  # report every case, then fail
            failures += 1
            print(f"{case}: FAILED to load: {type(e).__name__}: {e}")
    print(f"{failures} failed")
    return failures


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "check"):
        sys.exit(__doc__)
    if sys.argv[1] == "write":
        write(sys.argv[2])
    else:
        sys.exit(1 if check(sys.argv[2]) else 0)
