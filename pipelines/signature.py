"""The pipeline's signature: every `PipelineConfig` field, its type, default and help (the
text the Vertex console shows beside it).

Generated from components/common/config.py by scripts/generate_components.py (every pipeline
build rewrites it when stale): edit the config, not this file. `pipelines.lora_pipeline`
gives it a profile's defaults and runs the DAG on the arguments it returns.
"""

from typing import Any


def lora_pipeline(
    base_model: str = 'google/gemma-3-1b-it',
    hf_token_secret: str = '',
    trackers: str = 'wandb',
    wandb_project: str = 'dolly-lora',
    wandb_api_key_secret: str = '',
    mlflow_tracking_uri: str = '',
    mlflow_token_secret: str = '',
    vertex_experiment: str = '',
    system_prompt: str = '',
    seed: int = 42,
    max_seq_len: int = 1024,
    dataset: str = 'databricks/databricks-dolly-15k',
    data_format: str = 'auto',
    columns: str = '',
    dataset_split: str = 'train',
    dataset_config: str = '',
    dataset_revision: str = '',
    categories: str = '',
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    max_bad_row_fraction: float = 0.01,
    drop_test_overlap: bool = True,
    near_duplicate_threshold: float = 0.8,
    run_name: str = '',
    lora_r: int = 16,
    lora_alpha: int = 32,
    lora_dropout: float = 0.05,
    target_modules: str = 'all-linear',
    learning_rate: float = 0.0002,
    lr_scheduler_type: str = 'cosine',
    warmup_ratio: float = 0.03,
    num_train_epochs: float = 1.0,
    max_steps: int = -1,
    per_device_train_batch_size: int = 8,
    gradient_accumulation_steps: int = 2,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    bf16: str = 'auto',
    quantization: str = 'none',
    num_processes: int = 0,
    distributed: str = 'ddp',
    batching: str = 'auto',
    logging_steps: int = 10,
    eval_steps: int = 100,
    checkpoint_uri: str = '',
    save_steps: int = 100,
    save_minutes: float = 15.0,
    save_total_limit: int = 3,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    generation_batch_size: int = 16,
    eval_max_rows: int = 0,
    headline_metric: str = 'loss',
    gate_threshold: float = 0.0,
    bootstrap_samples: int = 2000,
    gate_min_rows: int = 30,
    prompts_uri: str = '',
    cost_estimate: str = '',
    gpu_hourly_usd: float = 0.85362,
    export_dtype: str = 'auto',
    serving_image: str = 'us-docker.pkg.dev/vertex-ai/vertex-vision-model-garden-dockers/pytorch-vllm-serve:20251205_0916_RC01',
    serving_max_model_len: int = 32768,
    deploy_endpoint: str = '',
    deploy_min_replicas: int = 1,
    deploy_max_replicas: int = 1,
    deploy_ttl_hours: float = 8.0,
    deploy: bool = False,
) -> dict[str, Any]:
    """LoRA fine-tune of an instruction model on Dolly-format data.

    Args:
        base_model: Hugging Face model id, local folder, gs:// folder or embedded://tiny-gemma3.
        hf_token_secret: Secret Manager name of the HF token (gated Gemma), '' = env/.env.
        trackers: Comma-separated trackers every step reports to: wandb, tensorboard, mlflow, vertex ('' =
            none). A tracker that cannot be reached warns once; the step goes on.
        wandb_project: W&B project (key from env/.env only).
        wandb_api_key_secret: Secret Manager name of the W&B API key, '' = env/.env.
        mlflow_tracking_uri: MLflow tracking server URI ('' = the MLFLOW_TRACKING_URI environment variable, else a
            local store next to the run; credentials from env/Secret Manager).
        mlflow_token_secret: Secret Manager name of the MLflow tracking token (MLFLOW_TRACKING_TOKEN), '' = env/.env.
        vertex_experiment: Vertex AI experiment the steps log to with trackers=vertex ('' = dolly-lora); submit
            --experiment sets it.
        system_prompt: Optional system message put before every prompt.
        seed: Seed for the split, LoRA init and data order.
        max_seq_len: Longest prompt+response in tokens; longer rows drop.
        dataset: Hugging Face dataset id, or a local or gs:// file (JSONL, .jsonl.gz, JSON array,
            Parquet, CSV), folder or glob of shards; embedded://dolly-15k-sample.jsonl
        data_format: Row format ('auto' = detected from the fields; a mix is refused).
        columns: Rename fields, name:column,... (e.g. instruction:question,response:answer).
        dataset_split: Split of a Hugging Face dataset.
        dataset_config: Configuration (subset) of a Hugging Face dataset.
        dataset_revision: Hub dataset revision ('' = the newest, pinned to its commit when read).
        categories: Comma-separated categories to keep ('' = all).
        val_fraction: Share of rows for validation.
        test_fraction: Share of rows for test.
        max_bad_row_fraction: Malformed rows are skipped and counted up to this share; above it the step fails.
        drop_test_overlap: Drop test rows that copy a training row (same prompt or near copy).
        near_duplicate_threshold: MinHash Jaccard similarity at which rows count as near copies.
        run_name: Stable run name for checkpoints ('' = the pipeline job name). submit --local sets it to
            --run-id, so a rerun finds its checkpoints.
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling numerator (scale = alpha / r).
        lora_dropout: Dropout on the LoRA path.
        target_modules: 'all-linear' or comma-separated module names (e.g. q_proj,v_proj).
        learning_rate: Peak learning rate.
        lr_scheduler_type: Learning-rate schedule after warmup.
        warmup_ratio: Share of steps for warmup.
        num_train_epochs: Epochs (ignored if max_steps > 0).
        max_steps: Stop after this many optimizer steps (-1: num_train_epochs).
        per_device_train_batch_size: Sequences per forward pass.
        gradient_accumulation_steps: Micro-batches per optimizer step.
        weight_decay: AdamW weight decay.
        max_grad_norm: Gradient clipping norm.
        bf16: bf16 mixed precision; 'auto' = on where the GPU supports it.
        quantization: Base weights while training: 'none' (bf16 on GPU, fp32 on CPU) or 'nf4' (QLoRA: 4-bit
            NormalFloat with double quantization via bitsandbytes, bf16 compute). Evaluation and
            inference load the base the way the adapter was trained.
        num_processes: Training processes, data-parallel, one per GPU (0 = one per GPU the machine has, 1 on
            CPU). Global batch = per_device_train_batch_size x gradient_accumulation_steps x
            num_processes.
        distributed: With several processes: 'ddp' keeps a whole model on every GPU; 'fsdp' shards the frozen
            base across them (a model bigger than one GPU).
        batching: 'padded': length-bucketed dynamic padding (CPU); 'packed': padding-free best-fit packing
            of whole rows into max_seq_len (GPU); 'auto' picks by hardware.
        logging_steps: Log loss/lr every N steps.
        eval_steps: Validation loss every N steps.
        checkpoint_uri: gs:// root for resumable checkpoints ('' = none); they go to
            <root>/<run>/fine-tune/checkpoints/step-NNNNNN/ and a rerun of the same run resumes.
        save_steps: Checkpoint every N optimizer steps.
        save_minutes: Also checkpoint when this many minutes passed (0 = off).
        save_total_limit: Complete checkpoints kept in GCS.
        max_new_tokens: Tokens generated per answer.
        temperature: 0 = greedy decoding.
        top_p: Nucleus sampling mass (temperature > 0).
        generation_batch_size: Prompts per generate() call.
        eval_max_rows: Evaluate on at most N test rows (0 = all).
        headline_metric: Metric the gate uses: 'loss' (response-token NLL, lower is better) or 'rougeL' (higher
            is better).
        gate_threshold: The tuned model passes the gate when the lower end of the 95% interval of its
            improvement over base on the headline metric exceeds this (metric units).
        bootstrap_samples: Paired bootstrap resamples of the test rows.
        gate_min_rows: Fewest test rows the gate decides on: below it the verdict is 'not enough test rows to
            decide' and nothing is registered (per category: the interval is shown greyed out). Why
            30: docs/evaluation.md.
        prompts_uri: JSONL of prompts ({'prompt': ...}) for inference ('' = test split).
        cost_estimate: The pre-run cost estimate `submit` computed (JSON; '' = none), shown in the report next
            to what the run really took.
        gpu_hourly_usd: Price of one hour of a GPU step's machine, for the cost estimate and the report
            (compiled from the price table for the profile's machine and capacity; set your own
            rate).
        export_dtype: Weights of the merged model: bfloat16 (what vLLM serves on an L4), float32, or auto =
            the fine-tune's precision (bf16 on a GPU; fp32 on CPU, so a CPU-trained model answers
            exactly what was evaluated).
        serving_image: Serving container of the registered model: Model Garden's prebuilt vLLM image (a newer
            pytorch-vllm-serve tag works the same way).
        serving_max_model_len: vLLM --max-model-len: longest prompt+answer the endpoint accepts (Gemma 3 1B's context;
            its KV cache fits one L4 many times over).
        deploy_endpoint: Endpoint ID to deploy to (its previous version is replaced once the new one is healthy);
            '' reuses this project's endpoint, or creates one.
        deploy_min_replicas: Fewest serving machines.
        deploy_max_replicas: Most serving machines.
        deploy_ttl_hours: Hours until the deployed version is undeployed again (a one-run Vertex schedule created
            at deploy time); 0 = until `submit undeploy`.
        deploy: Deploy the registered version to an endpoint on one L4 after the gate passes. Off by
            default: an endpoint bills by the hour until undeployed.
    """
    return dict(locals())
