"""EVA against real PEFT (run with ../shared/peft-python/peftpy from the worktree).

    PEFT_INTEROP_OUT=DIR dotnet test tests/Peft.Tests --filter "FullyQualifiedName~EvaTests"
    ../shared/peft-python/peftpy tools/peft-interop/peft_interop.py check DIR      # DIR/eva: PEFT loads our EVA file
    ../shared/peft-python/peftpy tools/peft-interop/eva_check.py DIR

1. DIR/eva/ranks: PeftDsl's EVA adapter with rank_pattern / alpha_pattern (a: rank 1, b: rank 7) loads in PEFT onto
   the same two-layer model and gives PeftDsl's output.
2. DIR/eva: PEFT's own initialize_lora_eva_weights on the PEFT-written model's base and the same batches gives the
   same ranks and the same lora_A rows as PeftDsl's EVA (PEFT: float32 and svd_lowrank; PeftDsl: float64, full SVD).
"""
import math
import os
import sys

import torch
import peft
from peft import LoraConfig, get_peft_model, initialize_lora_eva_weights
from peft.tuners.lora.config import EvaConfig
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(__file__))
from peft_interop import Tiny  # noqa: E402


class Two(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(8, 8)
        self.b = torch.nn.Linear(8, 8)

    def forward(self, x):
        return self.a(x[..., :8]) + self.b(x[..., 8:])


def ranks_case(folder):
    base = Two()
    base.load_state_dict(load_file(os.path.join(folder, "base.safetensors")))
    model = peft.PeftModel.from_pretrained(base, os.path.join(folder, "adapter")).eval()
    ref = load_file(os.path.join(folder, "reference.safetensors"))
    with torch.no_grad():
        err = (model(ref["x"]) - ref["y"]).abs().max().item()
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if "lora_A" in n}
    scalings = {n: m.scaling["default"] for n, m in model.named_modules() if hasattr(m, "scaling") and "default" in m.scaling}
    ok = err <= 1e-5 * (1 + ref["y"].abs().max().item())
    print(f"eva/ranks: PEFT {peft.__version__} lora_A shapes {shapes}, scalings {scalings}; max |y_peft - y_peftdsl| = {err:.2e} {'OK' if ok else 'MISMATCH'}")
    return ok


def init_case(folder):
    batches = load_file(os.path.join(folder, "batches.safetensors"))
    batches = [batches[f"batch{i}"] for i in range(len(batches))]
    base = Tiny()
    base.load_state_dict(load_file(os.path.join(folder, "base.safetensors")))
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q", "v", "f"], init_lora_weights="eva", eva_config=EvaConfig())
    model = get_peft_model(base, config)
    initialize_lora_eva_weights(model, dataloader=batches, forward_fn=lambda m, x: m(x),
                                prepare_model_inputs_fn=None, prepare_layer_inputs_fn=None, show_progress_bar=False)
    ours = load_file(os.path.join(folder, "adapter", "adapter_model.safetensors"))
    ok = True
    for layer in ["q", "v", "f"]:
        theirs = model.base_model.model.get_submodule(layer).lora_A["default"].weight.detach()
        mine = ours[f"base_model.model.{layer}.lora_A.weight"]
        if theirs.shape != mine.shape:
            print(f"eva init {layer}: PEFT rank {theirs.shape[0]}, PeftDsl rank {mine.shape[0]} MISMATCH")
            ok = False
            continue
        cos = (theirs * mine).sum(1)  # rows are unit-norm
        print(f"eva init {layer}: rank {mine.shape[0]} both; per-row cos(PEFT, PeftDsl) = {[round(c, 6) for c in cos.tolist()]}")
        ok = ok and bool((cos > 0.999).all())
    print(f"eva init: {'OK' if ok else 'MISMATCH'} (PEFT's rank_pattern {model.peft_config['default'].rank_pattern})")
    return ok


if __name__ == "__main__":
    root = sys.argv[1]
    results = [ranks_case(os.path.join(root, "eva", "ranks")), init_case(os.path.join(root, "eva"))]
    print(f"{results.count(False)} failed")
    sys.exit(0 if all(results) else 1)
