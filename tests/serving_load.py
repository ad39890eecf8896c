"""Load a model folder as a serving stack does (AutoConfig, AutoTokenizer, the chat template,
AutoModelForCausalLM) and print greedy answers as JSON. Run by another environment's Python
(tests/serving_transformers.py), so it imports nothing of this project.

    python tests/serving_load.py MODEL_DIR PROMPTS_JSON MAX_NEW_TOKENS
"""

from __future__ import annotations

import json
import sys


def main(model_dir: str, prompts_file: str, max_new_tokens: int) -> dict:
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir)
    text = getattr(config, "text_config", config)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    answers = []
    for prompt in json.loads(open(prompts_file).read()):  # noqa: SIM115, PTH123
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True,
            return_tensors="pt", return_dict=True,
        )
        with torch.no_grad():
            last = model(**ids).logits[0, -1].float()
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[0, ids["input_ids"].shape[1]:].tolist()
        answers.append({"prompt_ids": ids["input_ids"][0].tolist(), "answer_ids": new,
                        "answer": tokenizer.decode(new, skip_special_tokens=True),
                        "last_logits": [round(float(x), 6) for x in last]})
    return {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "tokenizer_class": type(tokenizer).__name__,
        "rope_theta": getattr(text, "rope_theta", None),
        "rope_local_base_freq": getattr(text, "rope_local_base_freq", None),
        "rope_scaling": getattr(text, "rope_scaling", None),
        "eos_token_id": tokenizer.eos_token_id,
        "special_tokens": sorted(tokenizer.all_special_tokens),
        "answers": answers,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
