"""reevaluation_schedule, the automation settings file and the on-change automation condition."""

import datetime as dt

import dagster as dg
import pytest

import schedules
from coursegpt_assets.core import layout
from coursegpt_assets.defs.partitions import AGENT_PARTITIONS, AGENT_TO_PAIRS, PAIR_PARTITIONS
from resources.tuning import LocalTrainer
from schedules import schedules as schedules_module
from schedules.config import AutomationConfigError, load_settings
from schedules.schedules import EVALUATION_AUTOMATION_CONDITION, reevaluation_schedule

ROUTER, MATH, CODE = "router__tiny-llama", "math__tiny-llama", "code__tiny-llama"
NIGHT = dt.datetime(2026, 3, 1, 3, 0, tzinfo=dt.UTC)


def _stand_in(name: str, deps=(), **kwargs) -> dg.AssetsDefinition:
    @dg.asset(name=name, partitions_def=PAIR_PARTITIONS, deps=list(deps), **kwargs)
    def _asset() -> None:
        return None

    return _asset


def defs_for(store) -> dg.Definitions:
    adapter = _stand_in("adapter")
    report = _stand_in("evaluation_report", [adapter])
    return dg.Definitions(
        assets=[adapter, report, _stand_in("model_card", [report])],
        schedules=schedules.SCHEDULES,
        resources={"store": store, "trainer": LocalTrainer()},
    )


def evaluate(defs: dg.Definitions, instance, when=NIGHT):
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                   repository_def=defs.get_repository_def(), resources=defs.resources) as context:
        return reevaluation_schedule.evaluate_tick(context)


def test_one_request_per_pair_with_an_adapter_keyed_by_date(store):
    store.write_json(layout.adapter_latest(ROUTER), {"version": "v1"})
    store.write_json(layout.adapter_latest(CODE), {"version": "v9"})
    store.write_json(f"{layout.adapter_dir(MATH, 'v2')}/training_summary.json", {})  # no latest.json: not evaluated
    defs = defs_for(store)
    with dg.instance_for_test() as instance:
        night = evaluate(defs, instance)
        next_night = evaluate(defs, instance, NIGHT + dt.timedelta(days=1))
    assert sorted((r.partition_key, r.run_key) for r in night.run_requests) == [
        (CODE, f"{CODE}:2026-03-01"), (ROUTER, f"{ROUTER}:2026-03-01")]
    assert all(set(r.asset_selection) == {dg.AssetKey("evaluation_report"), dg.AssetKey("model_card")}
               for r in night.run_requests)
    assert sorted(r.run_key for r in next_night.run_requests) == [f"{CODE}:2026-03-02", f"{ROUTER}:2026-03-02"]


def test_no_adapter_means_a_skip_with_a_reason(store):
    with dg.instance_for_test() as instance:
        result = evaluate(defs_for(store), instance)
    assert not result.run_requests and "no pair has an adapter" in result.skip_message


def test_schedule_cron_and_status_come_from_automation_yaml():
    cfg = load_settings().reevaluation_schedule
    assert reevaluation_schedule.cron_schedule == cfg.cron
    assert reevaluation_schedule.execution_timezone == cfg.timezone
    assert reevaluation_schedule.default_status == cfg.status()


def test_settings_per_environment_and_errors_name_file_and_key(tmp_path, monkeypatch):
    path = tmp_path / "automation.yaml"
    path.write_text("vertex_job_sensor: {default_status: {local: stopped, gcp: running}, minimum_interval_seconds: 30}\n")
    vertex = load_settings(path).vertex_job_sensor
    assert vertex.status() == dg.DefaultSensorStatus.STOPPED
    monkeypatch.setenv("COURSEGPT_ENV", "gcp")
    assert vertex.status() == dg.DefaultSensorStatus.RUNNING and vertex.minimum_interval_seconds == 30

    path.write_text("new_adapter_sensor: {minimum_interval_secs: 30}\n")
    with pytest.raises(AutomationConfigError, match=r"automation.yaml: new_adapter_sensor.minimum_interval_secs"):
        load_settings(path)
    path.write_text("reevaluation_schedule: {default_status: paused}\n")
    with pytest.raises(AutomationConfigError, match="reevaluation_schedule.default_status"):
        load_settings(path)


def test_a_bad_cron_fails_loading_naming_the_file(tmp_path, monkeypatch):
    path = tmp_path / "automation.yaml"
    path.write_text("reevaluation_schedule: {cron: '61 3 * * *'}\n")
    monkeypatch.setenv("COURSEGPT_AUTOMATION", str(path))
    monkeypatch.setattr(schedules_module, "settings", lambda: load_settings(path))
    with pytest.raises(AutomationConfigError, match=f"{path}: reevaluation_schedule"):
        schedules_module._build_schedule()


def test_everything_loads_into_one_definitions_object(store):
    adapter = _stand_in("adapter", ["tuning_job"])
    report = _stand_in("evaluation_report", [adapter], automation_condition=EVALUATION_AUTOMATION_CONDITION)
    defs = dg.Definitions(
        assets=[_stand_in("tuning_job"), adapter, report, _stand_in("model_card", [report])],
        asset_checks=schedules.SENSOR_CHECKS, sensors=schedules.SENSORS, schedules=schedules.SCHEDULES,
        resources={"store": store, "trainer": LocalTrainer()},
    )
    repo = defs.get_repository_def()
    assert {s.name for s in repo.sensor_defs} == {"new_adapter_sensor", "vertex_job_sensor",
                                                 "evaluation_automation_sensor"}
    assert [s.name for s in repo.schedule_defs] == ["reevaluation_schedule"]


# -- on-change rule -------------------------------------------------------------------------------------------
BENCHMARK_OK = {"value": True}


@dg.asset(name="benchmark", partitions_def=AGENT_PARTITIONS,
          check_specs=[dg.AssetCheckSpec("ready", asset="benchmark", blocking=True, partitions_def=AGENT_PARTITIONS)])
def benchmark_stand_in():
    return dg.MaterializeResult(check_results=[dg.AssetCheckResult(passed=BENCHMARK_OK["value"])])


@dg.asset(name="adapter", partitions_def=PAIR_PARTITIONS)
def adapter_stand_in():
    return None


@dg.asset(name="evaluation_report", partitions_def=PAIR_PARTITIONS, automation_condition=EVALUATION_AUTOMATION_CONDITION,
          deps=[adapter_stand_in, dg.AssetDep(benchmark_stand_in, partition_mapping=AGENT_TO_PAIRS)])
def evaluation_report_stand_in():
    return None


AUTOMATED = [benchmark_stand_in, adapter_stand_in, evaluation_report_stand_in]


def _requested(result) -> set[str]:
    return set(result.get_requested_partitions(dg.AssetKey("evaluation_report")))


def test_a_new_benchmark_version_re_evaluates_pairs_with_adapters_once_checks_pass(monkeypatch):
    monkeypatch.setitem(BENCHMARK_OK, "value", True)
    with dg.instance_for_test() as instance:
        dg.materialize(AUTOMATED, selection=["adapter"], partition_key=ROUTER, instance=instance)
        dg.materialize(AUTOMATED, selection=["benchmark"], partition_key="router", instance=instance)
        first = dg.evaluate_automation_conditions(defs=AUTOMATED, instance=instance)
        assert _requested(first) == set()  # nothing new since the condition started watching

        dg.materialize(AUTOMATED, selection=["benchmark"], partition_key="router", instance=instance)
        new_benchmark = dg.evaluate_automation_conditions(defs=AUTOMATED, instance=instance, cursor=first.cursor)
        assert _requested(new_benchmark) == {ROUTER}  # the other router pairs have no adapter
        quiet = dg.evaluate_automation_conditions(defs=AUTOMATED, instance=instance, cursor=new_benchmark.cursor)
        assert _requested(quiet) == set()

        dg.materialize(AUTOMATED, selection=["adapter"], partition_key=ROUTER, instance=instance)
        new_adapter = dg.evaluate_automation_conditions(defs=AUTOMATED, instance=instance, cursor=quiet.cursor)
        assert _requested(new_adapter) == set()  # new adapters are the sensor's job (run_key pair:version)

        monkeypatch.setitem(BENCHMARK_OK, "value", False)
        dg.materialize(AUTOMATED, selection=["benchmark"], partition_key="router", instance=instance,
                       raise_on_error=False)
        blocked = dg.evaluate_automation_conditions(defs=AUTOMATED, instance=instance, cursor=new_adapter.cursor)
        assert _requested(blocked) == set()  # a failed blocking check holds across runs

        monkeypatch.setitem(BENCHMARK_OK, "value", True)
        dg.materialize(AUTOMATED, selection=["benchmark"], partition_key="router", instance=instance)
        fixed = dg.evaluate_automation_conditions(defs=AUTOMATED, instance=instance, cursor=blocked.cursor)
        assert _requested(fixed) == {ROUTER}
