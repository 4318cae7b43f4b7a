//! CoCo's response shapes (spec §1.4–1.6): field names, enum spellings, and the spec's golden
//! semantics where they are ours too (risk score mean, cohort filtering).

mod common;

use std::collections::BTreeSet;

use chrono::NaiveDateTime;
use clinical::coco::*;
use clinical::gaps::{self, Gap, GapType, MeasureId, MeasureInfo, Priority};
use clinical::model::{AdmissionType, DoseUnit, EncounterClass as EC, ObservationKind as K, Sex};
use clinical::readmission;
use clinical::summary::{self, OutputRedaction, SummaryOptions};
use common::{P, d};
use serde_json::{Value, json};

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn ts() -> NaiveDateTime {
    d("2026-11-23")
        .and_hms_micro_opt(13, 46, 1, 236_924)
        .unwrap()
}

#[test]
fn care_gap_response_has_cocos_fields_and_spellings() {
    let p = P::aged(60, "2025-06-30", Sex::Female).dx("E11.9", "2015-01-01");
    let g = gaps::gaps(&p.r, d("2025-06-30")).unwrap();
    let resp = CareGapResponse::build(
        "TEST-001",
        ts(),
        &g,
        OutputRedaction::Keep,
        AuditTrail::default(),
    );
    let v = serde_json::to_value(&resp).unwrap();
    assert_eq!(
        keys(&v),
        set(&[
            "patient_id",
            "analysis_timestamp",
            "total_gaps",
            "risk_score",
            "care_gaps",
            "recommendations",
            "audit_trail"
        ])
    );
    assert_eq!(
        v["analysis_timestamp"],
        json!("2026-11-23T13:46:01.236924"),
        "naive ISO without offset, as CoCo"
    );
    assert_eq!(keys(&v["audit_trail"]), set(&["entries", "hash"]));
    let gap = &v["care_gaps"][0];
    assert_eq!(
        keys(gap),
        set(&[
            "gap_id",
            "type",
            "name",
            "description",
            "guideline_source",
            "due_date",
            "priority",
            "icd10_codes",
            "cpt_codes",
            "estimated_impact"
        ])
    );
    for gap in v["care_gaps"].as_array().unwrap() {
        let ty = gap["type"].as_str().unwrap();
        assert!(
            [
                "screening",
                "vaccination",
                "lab_test",
                "medication",
                "follow_up"
            ]
            .contains(&ty)
        );
        assert!(["critical", "high", "medium", "low"].contains(&gap["priority"].as_str().unwrap()));
        assert_eq!(gap["due_date"].as_str().unwrap().len(), 10);
        let id = gap["gap_id"].as_str().unwrap();
        assert!(
            id.starts_with("gap-")
                && id[4..].chars().all(|c| c.is_ascii_hexdigit())
                && id.len() == 12
        );
    }
    let back: CareGapResponse = serde_json::from_value(v).unwrap();
    assert_eq!(back, resp);
}

fn with_impact(m: MeasureId, impact: f64) -> &'static MeasureInfo {
    Box::leak(Box::new(MeasureInfo {
        impact,
        ..*gaps::info(m, "")
    }))
}

fn coco_mock_gaps() -> Vec<Gap> {
    [
        (MeasureId::Cms125, 0.80),
        (MeasureId::Cms122, 0.75),
        (MeasureId::Cms131, 0.70),
        (MeasureId::Cms147, 0.60),
    ]
    .into_iter()
    .map(|(m, i)| Gap {
        info: with_impact(m, i),
        due: d("2025-08-19"),
        evidence: vec![],
    })
    .collect()
}

#[test]
fn risk_score_and_recommendations_follow_cocos_golden_values() {
    // Spec §2.1.8: high 0.80, high 0.75, medium 0.70, medium 0.60 → (0.64+0.60+0.35+0.30)/4.
    let g = coco_mock_gaps();
    assert!((gaps::risk_score(&g) - 0.4725).abs() < 1e-12);
    assert_eq!(gaps::risk_score(&[]), 0.0);
    let r = gaps::recommendations(&g);
    assert_eq!(
        r[0],
        "Schedule appointments for 2 high-priority care gaps within 30 days"
    );
    assert_eq!(
        r[1],
        "Preventive screenings needed: Breast Cancer Screening, Diabetes: Eye Exam"
    );
    assert_eq!(r[2], "Vaccinations due: Influenza Immunization");
    assert_eq!(
        r[3],
        "Order pending laboratory tests for chronic disease monitoring"
    );
}

#[test]
fn cohort_summary_filters_after_counting_as_coco_does() {
    // Spec §2.1.8 cohort golden: ["a","b"], gap_types [screening], min_priority high.
    let per = vec![coco_mock_gaps(), coco_mock_gaps()];
    let s = cohort_summary(&per, Some(&[GapType::Screening]), Some(Priority::High));
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(
        keys(&v),
        set(&[
            "total_patients_analyzed",
            "patients_with_gaps",
            "total_gaps_identified",
            "gaps_by_type",
            "gaps_by_priority",
            "average_risk_score"
        ])
    );
    assert_eq!(v["patients_with_gaps"], json!(2));
    assert_eq!(v["total_gaps_identified"], json!(2));
    assert_eq!(v["gaps_by_type"], json!({"screening": 2}));
    assert_eq!(v["gaps_by_priority"], json!({"high": 2}));
    assert!((s.average_risk_score - 0.4725).abs() < 1e-12);
    let req: PatientCohort = serde_json::from_value(
        json!({"patient_ids": ["a", "b"], "gap_types": ["screening"], "min_priority": "high"}),
    )
    .unwrap();
    assert_eq!(req.min_priority, Some(Priority::High));
    assert!(
        serde_json::from_value::<PatientCohort>(
            json!({"patient_ids": ["a"], "min_priority": "urgent"})
        )
        .is_err()
    );
}

#[test]
fn guidelines_are_generated_from_the_rules_that_run() {
    let v = serde_json::to_value(guidelines()).unwrap();
    assert_eq!(
        keys(&v),
        set(&["guidelines", "last_updated", "next_update"])
    );
    let list = v["guidelines"].as_array().unwrap();
    assert_eq!(list.len(), 13);
    for g in list {
        assert_eq!(keys(g), set(&["id", "name", "version", "url", "gap_types"]));
    }
    assert_eq!(
        list[0]["url"],
        json!("https://ecqi.healthit.gov/ecqm/ec/2025/cms0130v13")
    );
    let closure = GapClosure {
        status: "closed".into(),
        gap_id: "gap-0011aabb".into(),
        patient_id: "TEST-001".into(),
        closure_date: d("2026-01-02"),
        closure_reason: "completed elsewhere".into(),
        audit_hash: "00".repeat(8),
    };
    let v = serde_json::to_value(closure).unwrap();
    assert_eq!(
        keys(&v),
        set(&[
            "status",
            "gap_id",
            "patient_id",
            "closure_date",
            "closure_reason",
            "audit_hash"
        ])
    );
}

fn inpatient() -> P {
    P::new("1950-01-01", Sex::Male)
        .dx("I50.9", "2019-01-01")
        .encounter(
            EC::Inpatient,
            "2025-01-10",
            Some("2025-01-18"),
            Some(AdmissionType::Emergent),
            &["I50.9"],
        )
        .lab(K::Hemoglobin, 11.0, "g/dL", "2025-01-17")
        .lab(K::Sodium, 133.0, "mmol/L", "2025-01-17")
}

#[test]
fn readmission_prediction_has_cocos_fields_and_a_null_interval() {
    let p = inpatient();
    let a = readmission::assess(&p.r, None).unwrap();
    let pred = ReadmissionPrediction::build("TEST-001", &a, ts(), AuditTrail::default()).unwrap();
    let v = serde_json::to_value(&pred).unwrap();
    assert_eq!(
        keys(&v),
        set(&[
            "patient_id",
            "encounter_id",
            "prediction_timestamp",
            "risk_score",
            "risk_tier",
            "confidence_interval",
            "contributing_factors",
            "recommended_interventions",
            "model_governance",
            "audit_trail"
        ])
    );
    assert_eq!(v["confidence_interval"], Value::Null);
    assert!(["low", "medium", "high", "critical"].contains(&v["risk_tier"].as_str().unwrap()));
    assert_eq!(v["encounter_id"], json!("enc-2"));
    let f = &v["contributing_factors"][0];
    assert_eq!(
        keys(f),
        set(&[
            "factor_name",
            "factor_category",
            "weight",
            "value",
            "reference_range",
            "is_modifiable"
        ])
    );
    assert!(
        ["clinical", "social", "utilization"].contains(&f["factor_category"].as_str().unwrap())
    );
    let i = &v["recommended_interventions"][0];
    assert_eq!(
        keys(i),
        set(&[
            "intervention_id",
            "name",
            "description",
            "target_factors",
            "estimated_risk_reduction",
            "evidence_level",
            "implementation_difficulty"
        ])
    );
    assert_eq!(
        keys(&v["model_governance"]),
        set(&[
            "model_id",
            "model_version",
            "training_date",
            "validation_auc",
            "fairness_metrics",
            "last_drift_check",
            "drift_status"
        ])
    );
    assert_eq!(v["model_governance"]["validation_auc"], json!(0.684));
    let batch = BatchPredictionResponse::build(vec![pred.clone(), pred], 12.5);
    let b = serde_json::to_value(&batch).unwrap();
    assert_eq!(
        keys(&b),
        set(&[
            "total_patients",
            "predictions",
            "summary",
            "processing_time_ms"
        ])
    );
    assert_eq!(
        keys(&b["summary"]),
        set(&[
            "risk_tier_distribution",
            "high_risk_count",
            "average_risk_score",
            "model_version"
        ])
    );
    assert_eq!(
        keys(&b["summary"]["risk_tier_distribution"]),
        set(&["low", "medium", "high", "critical"])
    );
}

#[test]
fn a_prediction_without_any_score_is_refused_with_the_missing_inputs() {
    let p = P::new("1950-01-01", Sex::Male).encounter(
        EC::Inpatient,
        "2025-01-10",
        Some("2025-01-18"),
        None,
        &[],
    );
    let a = readmission::assess(&p.r, None).unwrap();
    let missing =
        ReadmissionPrediction::build("TEST-001", &a, ts(), AuditTrail::default()).unwrap_err();
    assert!(missing.contains(&"acuity (admission type)"));
    assert!(missing.contains(&"hemoglobin at discharge"));
}

#[test]
fn summary_response_has_cocos_fields_and_cites_real_records() {
    let p = inpatient()
        .med(
            "Sertraline",
            Some((50.0, DoseUnit::Mg)),
            Some("daily"),
            "2025-01-15",
        )
        .lab(K::HbA1c, 7.2, "%", "2025-01-12");
    let s = summary::summarize(
        &p.r,
        &SummaryOptions {
            as_of: d("2025-02-01"),
            since: None,
            max_per_section: 5,
        },
    );
    let ctx = SummaryContext {
        patient_id: "TEST-001",
        summary_type: SummaryType::Comprehensive,
        time_range: TimeRange::Last6Months.as_str(),
        generated_at: ts(),
        exclude: &[],
        focus: &[],
        max_length: 500,
        redaction: OutputRedaction::Redact(phi::Mode::Tag),
        audit_id: "6f1c7c3e-1a2b-4c3d-8e9f-0a1b2c3d4e5f".into(),
        latency_ms: 3.0,
        audit_trail: AuditTrail::default(),
    };
    let resp = ClinicalSummaryResponse::build(&p.r, &s, ctx);
    let v = serde_json::to_value(&resp).unwrap();
    assert_eq!(
        keys(&v),
        set(&[
            "patient_id",
            "summary_type",
            "time_range",
            "generated_at",
            "summary",
            "key_findings",
            "active_problems",
            "current_medications",
            "recent_labs",
            "citations",
            "phi_audit",
            "rag_metrics",
            "model_info",
            "audit_trail"
        ])
    );
    assert_eq!(v["summary_type"], json!("comprehensive"));
    assert_eq!(v["time_range"], json!("last_6_months"));
    assert_eq!(
        keys(&v["phi_audit"]),
        set(&[
            "scan_performed",
            "phi_detected",
            "phi_types_found",
            "redaction_applied",
            "audit_id"
        ])
    );
    assert_eq!(
        keys(&v["rag_metrics"]),
        set(&[
            "documents_retrieved",
            "documents_used",
            "average_relevance",
            "context_tokens",
            "generation_tokens",
            "latency_ms"
        ])
    );
    let kf = &v["key_findings"][0];
    assert_eq!(
        keys(kf),
        set(&["finding", "category", "severity", "trend", "citations"])
    );
    let cit = &v["citations"][0];
    assert_eq!(
        keys(cit),
        set(&[
            "source_id",
            "source_type",
            "source_date",
            "relevance_score",
            "snippet",
            "author"
        ])
    );
    // Every key finding cites an id that is in the citation list and in the record.
    let cited: BTreeSet<&str> = v["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["source_id"].as_str().unwrap())
        .collect();
    for kf in v["key_findings"].as_array().unwrap() {
        for c in kf["citations"].as_array().unwrap() {
            assert!(cited.contains(c.as_str().unwrap()));
            assert!(p.r.find(&common::sid(c.as_str().unwrap())).is_some());
        }
    }
    assert_eq!(
        v["phi_audit"]["redaction_applied"],
        json!(true),
        "the dates are tagged for this role"
    );
    assert!(!v["summary"].as_str().unwrap().contains("2025-01-17"));
    for c in v["citations"].as_array().unwrap() {
        let date = c["source_date"].as_str().unwrap();
        assert!(
            date.len() == 4 && date.bytes().all(|b| b.is_ascii_digit()),
            "a redacted role gets the record's year only: {date}"
        );
    }
    let req: SummarizationRequest =
        serde_json::from_value(json!({"patient_id": "TEST-001"})).unwrap();
    assert_eq!(
        (
            req.summary_type,
            req.time_range,
            req.max_length,
            req.include_labs
        ),
        (
            SummaryType::Comprehensive,
            TimeRange::Last6Months,
            500,
            true
        )
    );
}

#[test]
fn a_redacting_role_gets_only_the_year_of_due_dates_and_citation_dates_and_keep_gets_them_in_full()
{
    let p = P::aged(60, "2025-06-30", Sex::Female).dx("E11.9", "2015-01-01");
    let g = gaps::gaps(&p.r, d("2025-06-30")).unwrap();
    assert!(!g.is_empty());
    let full = serde_json::to_value(CareGapResponse::build(
        "TEST-001",
        ts(),
        &g,
        OutputRedaction::Keep,
        AuditTrail::default(),
    ))
    .unwrap();
    for mode in [phi::Mode::Tag, phi::Mode::Mask] {
        let resp = CareGapResponse::build(
            "TEST-001",
            ts(),
            &g,
            OutputRedaction::Redact(mode),
            AuditTrail::default(),
        );
        let v = serde_json::to_value(&resp).unwrap();
        for (gap, seen) in g.iter().zip(v["care_gaps"].as_array().unwrap()) {
            assert_eq!(seen["due_date"], json!(gap.due.format("%Y").to_string()));
        }
        assert_eq!(
            full["care_gaps"][0]["due_date"],
            json!(g[0].due.to_string())
        );
        assert_eq!(v["care_gaps"][0]["gap_id"], full["care_gaps"][0]["gap_id"]);
        let back: CareGapResponse = serde_json::from_value(v).unwrap();
        assert_eq!(back, resp, "a year-only date reads back as a year");
    }

    let p = inpatient().lab(K::HbA1c, 7.2, "%", "2025-01-12");
    let s = summary::summarize(
        &p.r,
        &SummaryOptions {
            as_of: d("2025-02-01"),
            since: None,
            max_per_section: 5,
        },
    );
    let ctx = |redaction| SummaryContext {
        patient_id: "TEST-001",
        summary_type: SummaryType::Comprehensive,
        time_range: TimeRange::Last6Months.as_str(),
        generated_at: ts(),
        exclude: &[],
        focus: &[],
        max_length: 500,
        redaction,
        audit_id: "6f1c7c3e-1a2b-4c3d-8e9f-0a1b2c3d4e5f".into(),
        latency_ms: 3.0,
        audit_trail: AuditTrail::default(),
    };
    let kept = ClinicalSummaryResponse::build(&p.r, &s, ctx(OutputRedaction::Keep));
    let tagged =
        ClinicalSummaryResponse::build(&p.r, &s, ctx(OutputRedaction::Redact(phi::Mode::Tag)));
    assert!(!kept.citations.is_empty());
    assert_eq!(kept.citations.len(), tagged.citations.len());
    let lab = kept
        .citations
        .iter()
        .position(|c| {
            c.source_date == RoleDate::Full(d("2025-01-12").and_hms_opt(0, 0, 0).unwrap())
        })
        .expect("the lab is cited with its date in full");
    assert_eq!(
        tagged.citations[lab].source_date,
        RoleDate::Year(Year(2025))
    );
    for (k, t) in kept.citations.iter().zip(&tagged.citations) {
        assert_eq!(t.source_date, RoleDate::Year(Year(k.source_date.year())));
        assert!(matches!(k.source_date, RoleDate::Full(_)));
    }
    let v = serde_json::to_value(&tagged).unwrap();
    assert_eq!(v["citations"][lab]["source_date"], json!("2025"));
    let v = serde_json::to_value(&kept).unwrap();
    assert_eq!(
        v["citations"][lab]["source_date"],
        json!("2025-01-12T00:00:00")
    );
}
