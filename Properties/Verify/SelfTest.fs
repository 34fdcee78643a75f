/// Test-only properties of `rf verify` itself, present only under `RF_VERIFY_SELFTEST=1` (the CI suite never sees
/// them): "passes" (a counting property, non-vacuous on even seeds, records a shape; `RF_VERIFY_SELFTEST_DELAY_MS`
/// per case, for the kill-and-resume test) and "fails" (fails on every seed divisible by 5 when
/// `RF_VERIFY_SELFTEST_FAIL=1`: a failure to save, shrink and replay).
module ResearchFramework.Properties.Verify.SelfTest

open System
open Expecto
open ResearchFramework.Properties
open ResearchFramework.Properties.AlgorithmTests.Fixtures

let private enabled name = Environment.GetEnvironmentVariable name = "1"

let private delayMs =
    match Int32.TryParse(Environment.GetEnvironmentVariable "RF_VERIFY_SELFTEST_DELAY_MS") with
    | true, ms when ms > 0 -> ms
    | _ -> 0

[<Tests>]
let tests =
    testList "VerifySelfTest" [
        if enabled "RF_VERIFY_SELFTEST" then
            testPropertyCounting (Seeds.config 10) 0.2 "passes" <| fun counter (seed: int) ->
                if delayMs > 0 then Threading.Thread.Sleep delayMs
                Seeds.Observe.shape "n" (abs (seed % 1000))
                if seed % 2 = 0 then counter.Hit()
            testPropertyWithConfig (Seeds.config 10) "fails" <| fun (seed: int) ->
                if enabled "RF_VERIFY_SELFTEST_FAIL" && seed % 5 = 0 then failtestf "seed %d is divisible by 5" seed
    ]
