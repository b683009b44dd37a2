"""Small shared builders for the tests."""

import torch


def tiny_episode(tasks=2, ways=3, shots=1, queries=2, size=12, channels=3, seed=0, dtype=torch.float32):
    """Random tensors of a meta-batch: support (T, N*K, C, H, W), labels (T, N*K), query, labels."""
    g = torch.Generator().manual_seed(seed)
    support = torch.rand(tasks, ways * shots, channels, size, size, generator=g, dtype=dtype)
    query = torch.rand(tasks, ways * queries, channels, size, size, generator=g, dtype=dtype)
    support_labels = torch.stack([torch.randperm(ways, generator=g).repeat_interleave(shots) for _ in range(tasks)])
    query_labels = torch.stack([torch.randperm(ways, generator=g).repeat_interleave(queries) for _ in range(tasks)])
    return support, support_labels, query, query_labels


def perturb(module, scale=0.3, seed=0):
    """Move parameters (of a module, or an iterable of parameters) away from their
    initialisation (identity-initialised generators)."""
    g = torch.Generator().manual_seed(seed)
    params = module.parameters() if isinstance(module, torch.nn.Module) else module
    with torch.no_grad():
        for p in params:
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device))
