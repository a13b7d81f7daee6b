"""The 59 seed papers as plain metadata, in the order of the seed file.

Every entry here has status ``planned`` and no reproduction. A paper that gets a
reproduction gets its own module ``lifelong/papers/<short_name with underscores>.py``
defining ``PAPER`` with the same number and short name; :func:`lifelong.papers.all_papers`
then shows that module's entry instead of the one below.

Categories use a small fixed vocabulary (see :data:`CATEGORIES`). The arXiv id is
filled in only where the research catalogue or the seed text names it.
"""

from __future__ import annotations

from lifelong.papers.base import Paper

#: The category labels used below.
CATEGORIES: tuple[str, ...] = (
    "continual method",
    "continual benchmark",
    "PEFT/adapter",
    "merging/routing",
    "optimizer",
    "test-time adaptation",
    "few-shot/meta-learning",
    "in-context learning",
    "bandits/RL",
    "federated",
    "survey",
    "other",
)

CATALOG: tuple[Paper, ...] = (
    Paper(1, "intent3d", "Intent3D: 3D Object Detection in RGB-D Scans Based on Human Intention", "other"),
    Paper(2, "lal-robust", "Learning to Actively Learn: A Robust Approach", "bandits/RL"),
    Paper(3, "gpicl", "General-Purpose In-Context Learning by Meta-Learning Transformers", "in-context learning"),
    Paper(4, "corda", "CorDA: Context-Oriented Decomposition Adaptation of Large Language Models", "PEFT/adapter"),
    Paper(
        5,
        "adapt-inf",
        "Adapt-infty: Scalable Lifelong Multimodal Instruction Tuning via Dynamic Data Selection",
        "continual method",
    ),
    Paper(6, "lora-limits", "Computational Limits of Low-Rank Adaptation (LoRA) for Transformer-Based Models", "other"),
    Paper(7, "fscil-tricks", "A Bag of Tricks for Few-Shot Class-Incremental Learning", "continual method"),
    Paper(8, "hle", "Online Continual Learning on Hierarchical Label Expansion", "continual method"),
    Paper(
        9,
        "cfsl-instance",
        "Expanding continual few-shot learning benchmarks to include recognition of specific instances",
        "continual benchmark",
    ),
    Paper(10, "adadagrad", "AdAdaGrad: Adaptive Batch Size Schemes for Adaptive Gradient Methods", "optimizer"),
    Paper(
        11, "prd", "Prototype-Sample Relation Distillation: Towards Replay-Free Continual Learning", "continual method"
    ),
    Paper(
        12, "phatgoose", "Learning to Route Among Specialized Experts for Zero-Shot Generalization", "merging/routing"
    ),
    Paper(13, "mhr", "Multi-Head Adapter Routing for Cross-Task Generalization", "PEFT/adapter"),
    Paper(
        14,
        "adaptive-rr",
        "Revisiting Plasticity in Visual Reinforcement Learning: Data, Modules and Training Stages",
        "bandits/RL",
    ),
    Paper(
        15,
        "codyra",
        "Adaptive Rank, Reduced Forgetting: Knowledge Retention in Continual Learning Vision-Language "
        "Models with Dynamic Rank-Selective LoRA",
        "continual method",
    ),
    Paper(16, "tame", "TAME: Task Agnostic Continual Learning using Multiple Experts", "continual method"),
    Paper(
        17,
        "chameleon",
        "Chameleon: A Data-Efficient Generalist for Dense Visual Prediction in the Wild",
        "few-shot/meta-learning",
    ),
    Paper(
        18,
        "icl-boolean",
        "Understanding In-Context Learning in Transformers and LLMs by Learning to Learn Discrete Functions",
        "in-context learning",
    ),
    Paper(
        19,
        "nevis22",
        "NEVIS'22: A Stream of 100 Tasks Sampled from 30 Years of Computer Vision Research",
        "continual benchmark",
    ),
    Paper(
        20,
        "raml",
        "Retrieval-Augmented Meta Learning for Low-Resource Text Classification",
        "few-shot/meta-learning",
        arxiv="2309.04979",
    ),
    Paper(21, "cascading-rl", "Cascading Reinforcement Learning", "bandits/RL"),
    Paper(22, "mosa", "Split & Merge: Unlocking the Potential of Visual Adapters via Sparse Training", "PEFT/adapter"),
    Paper(
        23,
        "logit-fusion",
        "On Giant's Shoulders: Effortless Weak to Strong by Dynamic Logits Fusion",
        "merging/routing",
    ),
    Paper(24, "neucb", "Contextual Bandits with Online Neural Regression", "bandits/RL"),
    Paper(
        25,
        "icl-mechanics",
        "The mechanistic basis of data dependence and abrupt learning in an in-context classification task",
        "in-context learning",
    ),
    Paper(26, "dkvb", "Discrete Key-Value Bottleneck", "continual method"),
    Paper(27, "ta-lpo", "Discovering Temporally-Aware Reinforcement Learning Algorithms", "bandits/RL"),
    Paper(28, "onpro", "Online Prototype Learning for Online Continual Learning", "continual method"),
    Paper(29, "fed-recon", "Federated Reconnaissance: Efficient, Distributed, Class-Incremental Learning", "federated"),
    Paper(30, "niw-meta", "A Hierarchical Bayesian Model for Deep Few-Shot Meta Learning", "few-shot/meta-learning"),
    Paper(31, "slm", "Scalable Language Model with Generalized Continual Learning", "continual method"),
    Paper(32, "rise", "Recursive Introspection: Teaching Language Model Agents How to Self-Improve", "bandits/RL"),
    Paper(33, "lamb", "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes", "optimizer"),
    Paper(
        34, "refined-schedules", "When, Why and How Much? Adaptive Learning Rate Scheduling by Refinement", "optimizer"
    ),
    Paper(
        35,
        "dphn",
        "Continual Learning with Dependency Preserving Hypernetworks",
        "continual method",
        arxiv="2209.07712",
    ),
    Paper(
        36,
        "temporary-forgetting",
        "Dual Process Learning: Controlling Use of In-Context vs. In-Weights Strategies with Weight Forgetting",
        "in-context learning",
    ),
    Paper(
        37, "allora", "ALLoRA: Adaptive Learning Rate Mitigates LoRA Fatal Flaws", "PEFT/adapter", arxiv="2410.09692"
    ),
    Paper(
        38,
        "jiuzhang2",
        "JiuZhang 2.0: A Unified Chinese Pre-trained Language Model for Multi-task Mathematical Problem Solving",
        "other",
    ),
    Paper(
        39,
        "dst-cl",
        "Continual Learning with Dynamic Sparse Training: Exploring Algorithms for Effective Model Updates",
        "continual method",
    ),
    Paper(
        40,
        "alp-gmm",
        "Teacher algorithms for curriculum learning of Deep RL in continuously parameterized environments",
        "bandits/RL",
    ),
    Paper(41, "fedins", "Towards Instance-adaptive Inference for Federated Learning", "federated"),
    Paper(
        42,
        "reloop2",
        "ReLoop2: Building Self-Adaptive Recommendation Models via Responsive Error Compensation Loop",
        "test-time adaptation",
        arxiv="2306.08808",
    ),
    Paper(
        43,
        "simplecil",
        "Revisiting Class-Incremental Learning with Pre-Trained Models: Generalizability and Adaptivity are "
        "All You Need",
        "continual method",
    ),
    Paper(
        44,
        "scalearn",
        "ScaLearn: Simple and Highly Parameter-Efficient Task Transfer by Learning to Scale",
        "PEFT/adapter",
        arxiv="2310.01217",
    ),
    Paper(
        45,
        "triadaptlora",
        "TriAdaptLoRA: Brain-Inspired Triangular Adaptive Low-Rank Adaptation for Parameter-Efficient Fine-Tuning",
        "PEFT/adapter",
        arxiv="2501.08008",
    ),
    Paper(46, "pointer-networks", "Pointer Networks", "other"),
    Paper(47, "lame", "Parameter-free Online Test-time Adaptation", "test-time adaptation"),
    Paper(48, "cl-llm-survey", "Continual Learning of Large Language Models: A Comprehensive Survey", "survey"),
    Paper(
        49, "breadcrumbs", "Model Breadcrumbs: Scaling Multi-Task Model Merging with Sparse Masks", "merging/routing"
    ),
    Paper(
        50,
        "mamba-fscil",
        "Mamba-FSCIL: Dynamic Adaptation with Selective State Space Model for Few-Shot Class-Incremental Learning",
        "continual method",
    ),
    Paper(
        51,
        "icl-linear",
        "What learning algorithm is in-context learning? Investigations with linear models",
        "in-context learning",
    ),
    Paper(
        52,
        "transductive-clustering",
        "Transductive Few-Shot Learning: Clustering is All You Need?",
        "few-shot/meta-learning",
    ),
    Paper(
        53,
        "liquid-nn",
        "Liquid Neural Network-based Adaptive Learning vs. Incremental Learning for Link Load Prediction amid "
        "Concept Drift due to Network Failures",
        "other",
    ),
    Paper(
        54,
        "onerec",
        "OneRec: Unifying Retrieve and Rank with Generative Recommender and Iterative Preference Alignment",
        "other",
    ),
    Paper(
        55,
        "duo-llm",
        "Duo-LLM: A Framework for Studying Adaptive Computation in Large Language Models",
        "merging/routing",
    ),
    Paper(
        56,
        "slca",
        "SLCA: Slow Learner with Classifier Alignment for Continual Learning on a Pre-trained Model",
        "continual method",
    ),
    Paper(57, "lt-sft", "Composable Sparse Fine-Tuning for Cross-Lingual Transfer", "PEFT/adapter"),
    Paper(
        58,
        "meow",
        "Heterogeneous Graph Contrastive Learning with Meta-path Contexts and Adaptively Weighted Negative Samples",
        "other",
    ),
    Paper(
        59, "n2n", "N2N Learning: Network to Network Compression via Policy Gradient Reinforcement Learning", "other"
    ),
)
