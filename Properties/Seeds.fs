/// Seeds of the property tests. Every property takes an `int` seed and builds its case from it, so a
/// failure replays from the printed seed alone. FsCheck's default `int` generator draws from
/// [−size, size] (size ≤ 100 by default), i.e. at most ~200 distinct cases however many tests run;
/// here seeds come from (almost) the whole Int32 range instead, so `--cases` far beyond the CI counts
/// keeps finding new cases. The range stops 2¹⁶ short of both ends, so `abs seed` never meets
/// Int32.MinValue and `seed + k` (k < 65 536, the generators' derived seeds) never wraps.
module ResearchFramework.Properties.Seeds

open System
open FsCheck
open FsCheck.FSharp
open Expecto

/// Lowest and highest seed drawn: ±(2³¹ − 2¹⁶), near the whole Int32 range.
let lowest, highest = -2147418112, 2147418111

/// Arbitrary instance that replaces FsCheck's `int` generator in the suite's configs.
type FullRangeSeeds =
    static member Int32() : Arbitrary<int> =
        gen {
            let! high = Gen.choose (-32767, 32766)
            let! low = Gen.choose (0, 65535)
            return high * 65536 + low
        }
        |> Arb.fromGen

/// `RF_CASES_SCALE` (default 1): every property runs that many times its CI case count, the same code at
/// any scale (e.g. `RF_CASES_SCALE=100 ./build.sh test -- --filter MathCore` for a verification run far
/// beyond CI). A malformed value fails at start-up instead of silently running the CI counts.
let scale =
    match Environment.GetEnvironmentVariable "RF_CASES_SCALE" with
    | null | "" -> 1.0
    | v ->
        match Double.TryParse(v, Globalization.NumberStyles.Float, Globalization.CultureInfo.InvariantCulture) with
        | true, x when x > 0.0 && Double.IsFinite x -> x
        | _ -> failwithf "RF_CASES_SCALE=%s: expected a positive number" v

/// `RF_REPLAY_SEED=S`: every property runs exactly one case, seed S (the `Original:` value FsCheck prints for a
/// failure), so `RF_REPLAY_SEED=S ./build.sh test -- --filter-test-case "NAME"` replays a failing case bit for bit.
let replay =
    match Environment.GetEnvironmentVariable "RF_REPLAY_SEED" with
    | null | "" -> None
    | v ->
        match Int32.TryParse(v, Globalization.NumberStyles.Integer, Globalization.CultureInfo.InvariantCulture) with
        | true, seed -> Some seed
        | _ -> failwithf "RF_REPLAY_SEED=%s: expected an integer seed" v

/// The one seed of a replay run.
type ReplaySeed =
    static member Int32() : Arbitrary<int> = Gen.constant (defaultArg replay 0) |> Arb.fromGen

/// Property config with `cases` cases (× `scale`, at least 1), seeds from the full range (`FullRangeSeeds`);
/// under `RF_REPLAY_SEED`, one case with that seed.
let config (cases: int) =
    match replay with
    | Some _ -> { FsCheckConfig.defaultConfig with maxTest = 1; arbitrary = [ typeof<ReplaySeed> ] }
    | None -> { FsCheckConfig.defaultConfig with maxTest = max 1 (int (Math.Round(float cases * scale))); arbitrary = [ typeof<FullRangeSeeds> ] }

/// `RF_SIZE_SCALE` (default 1, at least 1): the upper bounds of the generated shapes that read it (`scaled`: the
/// MathCore matrix shapes, the Algorithm regression problems) are multiplied by it, e.g. `RF_SIZE_SCALE=4` draws
/// n up to 160 where CI draws up to 40. At 1 the draws are exactly the CI ones. `rf verify --size-scale` sets it.
let sizeScale =
    match Environment.GetEnvironmentVariable "RF_SIZE_SCALE" with
    | null | "" -> 1.0
    | v ->
        match Double.TryParse(v, Globalization.NumberStyles.Float, Globalization.CultureInfo.InvariantCulture) with
        | true, x when x >= 1.0 && Double.IsFinite x -> x
        | _ -> failwithf "RF_SIZE_SCALE=%s: expected a number ≥ 1" v

/// An exclusive upper bound of a generated dimension (as for `Random.Next`), scaled by `sizeScale`; at scale 1 exactly
/// `bound`.
let scaled (bound: int) = if sizeScale = 1.0 then bound else int (Math.Round(float bound * sizeScale))

/// What a verification run (`rf verify`) reads back from a batch of cases, beside FsCheck's own result: the largest
/// shapes the generators drew and the non-vacuous count of a counting property. The CI runner ignores both.
module Observe =
    let private maxima = Collections.Concurrent.ConcurrentDictionary<string, int>()
    let mutable private nonVacuous : (int * float) option = None

    /// True in a verification run: a counting property then reports its non-vacuous count here instead of failing a
    /// batch on its own (the run judges the count over all its batches).
    let mutable verifying = false

    /// Records a drawn dimension (`key` = "n", "m", …); the batch reports the largest value of each key.
    let shape (key: string) (value: int) = maxima.AddOrUpdate(key, value, fun _ old -> max old value) |> ignore

    /// Records the non-vacuous count of a counting property's run and its required fraction.
    let counted (count: int) (fraction: float) = nonVacuous <- Some (count, fraction)

    /// Clears the observations before a batch.
    let reset () =
        maxima.Clear()
        nonVacuous <- None

    /// The largest value of each recorded key since `reset`, by key.
    let shapes () = maxima |> Seq.map (fun kv -> kv.Key, kv.Value) |> Seq.sortBy fst |> List.ofSeq

    /// The non-vacuous count (and required fraction) since `reset`, when the property counts.
    let nonVacuousCount () = nonVacuous

/// One int for every int argument of a property, set by code (a regression line, a replay): `Pinned.Value`.
type Pinned =
    static member val Value = 0 with get, set
    static member Int32() : Arbitrary<int> = Gen.constant () |> Gen.map (fun () -> Pinned.Value) |> Arb.fromGen
