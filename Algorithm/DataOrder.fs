/// Deterministic batch order (SPEC §4.1: Phase I uses the base run's batches). Epoch e uses a
/// permutation of 0..n−1 drawn from a dedicated torch.Generator seeded by (seed, e); iteration t
/// takes batch t mod ⌊n/B⌋ of epoch ⌊t / ⌊n/B⌋⌋ (the last partial batch of an epoch is dropped).
/// With B ≥ n every step is the full batch in index order. Because every generator is re-seeded
/// from (seed, epoch), the data-order state of a run is just its iteration t.
module ResearchFramework.Algorithm.DataOrder

open TorchSharp

/// Seed of the generator of epoch e (splitmix-style constant, wrapping arithmetic).
let epochSeed (seed: int) (epoch: int) : uint64 =
    uint64 (int64 seed) * 0x9E3779B97F4A7C15UL + uint64 epoch

/// Effective batch size min(B, n) and steps per epoch max(1, ⌊n / B⌋).
let shape (n: int) (batchSize: int) =
    let b = min batchSize n
    b, max 1 (n / b)

/// The permutation of epoch e (a fresh tensor, caller disposes).
let permutation (seed: int) (n: int) (epoch: int) : torch.Tensor =
    use g = new torch.Generator(epochSeed seed epoch, torch.CPU)
    torch.randperm(int64 n, generator = g)

/// Indices of the batch of iteration t (a fresh int64 tensor), recomputing the permutation.
let batch (seed: int) (n: int) (batchSize: int) (t: int) : torch.Tensor =
    let b, steps = shape n batchSize
    if b >= n then torch.arange(int64 n, dtype = torch.int64)
    else
        use p = permutation seed n (t / steps)
        p.narrow(0L, int64 ((t % steps) * b), int64 b).clone()
