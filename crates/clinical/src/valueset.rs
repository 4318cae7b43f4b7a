//! Value sets: small, explicit code lists, one per clinical concept the rules need.
//!
//! **These are subsets of the VSAC value sets** (NLM Value Set Authority Center) that the cited
//! eCQMs reference, chosen to cover the codes that appear in practice and in the test data; they
//! are not the complete VSAC expansions (which need a UMLS licence to download). A code that is
//! in VSAC but missing here makes a rule miss a qualifying event, so it reports a gap that a
//! complete expansion would not: the failure mode is a false reminder, never a silently closed
//! gap. Replace with full expansions for quality reporting.
//!
//! ICD-10-CM entries ending in `*` match every code in that category (`F10*` matches `F10.20`).

use crate::model::{Code, CodeSystem};

/// A named list of codes.
#[derive(Debug)]
pub struct ValueSet {
    /// The concept (as the eCQM names its value set).
    pub name: &'static str,
    /// Codes, with `*` prefixes for ICD-10-CM categories.
    pub codes: &'static [(CodeSystem, &'static str)],
}

impl ValueSet {
    /// True if `code` is in the set.
    pub fn contains(&self, code: &Code) -> bool {
        self.codes.iter().any(|(system, c)| {
            *system == code.system
                && match c.strip_suffix('*') {
                    Some(prefix) => code.code.starts_with(prefix),
                    None => code.code == *c,
                }
        })
    }
}

use CodeSystem::{Cpt, Cvx, Hcpcs, Icd10Cm as Icd, Snomed};

/// Colonoscopy (CMS130 "Colonoscopy").
pub static COLONOSCOPY: ValueSet = ValueSet {
    name: "Colonoscopy",
    codes: &[
        (Cpt, "44388"),
        (Cpt, "44389"),
        (Cpt, "44390"),
        (Cpt, "44391"),
        (Cpt, "44392"),
        (Cpt, "44394"),
        (Cpt, "44401"),
        (Cpt, "44402"),
        (Cpt, "44403"),
        (Cpt, "44404"),
        (Cpt, "44405"),
        (Cpt, "44406"),
        (Cpt, "44407"),
        (Cpt, "44408"),
        (Cpt, "45378"),
        (Cpt, "45379"),
        (Cpt, "45380"),
        (Cpt, "45381"),
        (Cpt, "45382"),
        (Cpt, "45384"),
        (Cpt, "45385"),
        (Cpt, "45386"),
        (Cpt, "45388"),
        (Cpt, "45389"),
        (Cpt, "45390"),
        (Cpt, "45391"),
        (Cpt, "45392"),
        (Cpt, "45393"),
        (Cpt, "45398"),
        (Hcpcs, "G0105"),
        (Hcpcs, "G0121"),
        (Snomed, "73761001"),
    ],
};

/// Flexible sigmoidoscopy (CMS130).
pub static FLEXIBLE_SIGMOIDOSCOPY: ValueSet = ValueSet {
    name: "Flexible Sigmoidoscopy",
    codes: &[
        (Cpt, "45330"),
        (Cpt, "45331"),
        (Cpt, "45332"),
        (Cpt, "45333"),
        (Cpt, "45334"),
        (Cpt, "45335"),
        (Cpt, "45337"),
        (Cpt, "45338"),
        (Cpt, "45340"),
        (Cpt, "45341"),
        (Cpt, "45342"),
        (Cpt, "45346"),
        (Cpt, "45347"),
        (Cpt, "45349"),
        (Cpt, "45350"),
        (Hcpcs, "G0104"),
        (Snomed, "44441009"),
    ],
};

/// CT colonography (CMS130).
pub static CT_COLONOGRAPHY: ValueSet = ValueSet {
    name: "CT Colonography",
    codes: &[(Cpt, "74261"), (Cpt, "74262"), (Cpt, "74263")],
};

/// sDNA-FIT as a procedure code (CMS130; the LOINC results are observations).
pub static SDNA_FIT_PROCEDURE: ValueSet = ValueSet {
    name: "sDNA FIT Test",
    codes: &[(Cpt, "81528")],
};

/// Malignant neoplasm of colon and total colectomy (CMS130 exclusions).
pub static COLORECTAL_CANCER: ValueSet = ValueSet {
    name: "Malignant Neoplasm of Colon",
    codes: &[
        (Icd, "C18*"),
        (Icd, "C19*"),
        (Icd, "C20*"),
        (Icd, "C21.2"),
        (Icd, "C21.8"),
        (Icd, "C78.5"),
    ],
};

/// Total colectomy (CMS130 exclusion).
pub static TOTAL_COLECTOMY: ValueSet = ValueSet {
    name: "Total Colectomy",
    codes: &[
        (Cpt, "44150"),
        (Cpt, "44151"),
        (Cpt, "44155"),
        (Cpt, "44156"),
        (Cpt, "44157"),
        (Cpt, "44158"),
        (Cpt, "44210"),
        (Cpt, "44211"),
        (Cpt, "44212"),
        (Snomed, "26390003"),
    ],
};

/// Screening and diagnostic mammography (CMS125 "Mammography").
pub static MAMMOGRAPHY: ValueSet = ValueSet {
    name: "Mammography",
    codes: &[
        (Cpt, "77061"),
        (Cpt, "77062"),
        (Cpt, "77063"),
        (Cpt, "77065"),
        (Cpt, "77066"),
        (Cpt, "77067"),
        (Hcpcs, "G0202"),
        (Hcpcs, "G0204"),
        (Hcpcs, "G0206"),
    ],
};

/// Bilateral mastectomy status (CMS125 exclusion; unilateral right + left is checked apart).
pub static BILATERAL_MASTECTOMY: ValueSet = ValueSet {
    name: "Status Post Bilateral Mastectomy",
    codes: &[(Icd, "Z90.13"), (Snomed, "17086001")],
};
/// Absence of right breast.
pub static RIGHT_MASTECTOMY: ValueSet = ValueSet {
    name: "Status Post Right Mastectomy",
    codes: &[(Icd, "Z90.11")],
};
/// Absence of left breast.
pub static LEFT_MASTECTOMY: ValueSet = ValueSet {
    name: "Status Post Left Mastectomy",
    codes: &[(Icd, "Z90.12")],
};

/// Hysterectomy with no residual cervix and congenital absence of cervix (CMS124 exclusions).
pub static NO_CERVIX: ValueSet = ValueSet {
    name: "Hysterectomy with No Residual Cervix / Congenital or Acquired Absence of Cervix",
    codes: &[
        (Icd, "Q51.5"),
        (Icd, "Z90.710"),
        (Icd, "Z90.712"),
        (Cpt, "51925"),
        (Cpt, "57540"),
        (Cpt, "57545"),
        (Cpt, "57550"),
        (Cpt, "57555"),
        (Cpt, "57556"),
        (Cpt, "58150"),
        (Cpt, "58152"),
        (Cpt, "58200"),
        (Cpt, "58210"),
        (Cpt, "58240"),
        (Cpt, "58260"),
        (Cpt, "58262"),
        (Cpt, "58263"),
        (Cpt, "58267"),
        (Cpt, "58270"),
        (Cpt, "58275"),
        (Cpt, "58280"),
        (Cpt, "58285"),
        (Cpt, "58290"),
        (Cpt, "58291"),
        (Cpt, "58292"),
        (Cpt, "58294"),
        (Cpt, "58548"),
        (Cpt, "58550"),
        (Cpt, "58552"),
        (Cpt, "58553"),
        (Cpt, "58554"),
        (Cpt, "58570"),
        (Cpt, "58571"),
        (Cpt, "58572"),
        (Cpt, "58573"),
        (Cpt, "58951"),
        (Cpt, "58953"),
        (Cpt, "58954"),
        (Cpt, "58956"),
        (Cpt, "59135"),
    ],
};

/// Diabetes (CMS122, CMS131).
pub static DIABETES: ValueSet = ValueSet {
    name: "Diabetes",
    codes: &[
        (Icd, "E10*"),
        (Icd, "E11*"),
        (Icd, "E13*"),
        (Icd, "O24.0*"),
        (Icd, "O24.1*"),
        (Icd, "O24.3*"),
        (Icd, "O24.8*"),
    ],
};

/// Retinal or dilated eye exam by an eye care professional (CMS131; CPT II result codes
/// included).
pub static RETINAL_EXAM: ValueSet = ValueSet {
    name: "Retinal or Dilated Eye Exam",
    codes: &[
        (Cpt, "92002"),
        (Cpt, "92004"),
        (Cpt, "92012"),
        (Cpt, "92014"),
        (Cpt, "92134"),
        (Cpt, "92201"),
        (Cpt, "92202"),
        (Cpt, "92227"),
        (Cpt, "92228"),
        (Cpt, "92229"),
        (Cpt, "92235"),
        (Cpt, "92250"),
        (Cpt, "2022F"),
        (Cpt, "2023F"),
        (Cpt, "2024F"),
        (Cpt, "2025F"),
        (Cpt, "2026F"),
        (Cpt, "2033F"),
        (Snomed, "252779009"),
    ],
};

/// Codes recording a retinal exam *without* retinopathy (CMS131 accepts these from the year
/// before the period).
pub static RETINAL_EXAM_NEGATIVE: ValueSet = ValueSet {
    name: "Retinal exam without evidence of retinopathy",
    codes: &[
        (Cpt, "2023F"),
        (Cpt, "2025F"),
        (Cpt, "2033F"),
        (Hcpcs, "G2184"),
    ],
};

/// Essential hypertension (CMS165).
pub static ESSENTIAL_HYPERTENSION: ValueSet = ValueSet {
    name: "Essential Hypertension",
    codes: &[(Icd, "I10")],
};

/// End-stage renal disease, dialysis, kidney transplant (CMS165 exclusions).
pub static ESRD_DIALYSIS_TRANSPLANT: ValueSet = ValueSet {
    name: "End Stage Renal Disease / Dialysis / Kidney Transplant",
    codes: &[
        (Icd, "N18.5"),
        (Icd, "N18.6"),
        (Icd, "Z99.2"),
        (Icd, "Z94.0"),
        (Icd, "Z49*"),
        (Cpt, "90935"),
        (Cpt, "90937"),
        (Cpt, "90945"),
        (Cpt, "90947"),
        (Cpt, "90960"),
        (Cpt, "90961"),
        (Cpt, "90962"),
        (Cpt, "90966"),
        (Cpt, "90970"),
        (Cpt, "50360"),
        (Cpt, "50365"),
        (Cpt, "50380"),
    ],
};

/// Pregnancy (CMS165 exclusion).
pub static PREGNANCY: ValueSet = ValueSet {
    name: "Pregnancy",
    codes: &[
        (Icd, "O0*"),
        (Icd, "O1*"),
        (Icd, "O2*"),
        (Icd, "O3*"),
        (Icd, "O4*"),
        (Icd, "O6*"),
        (Icd, "O7*"),
        (Icd, "O9*"),
        (Icd, "Z33.1"),
        (Icd, "Z34*"),
    ],
};

/// Influenza vaccines (CMS147).
pub static INFLUENZA_VACCINE: ValueSet = ValueSet {
    name: "Influenza Vaccine",
    codes: &[
        (Cvx, "88"),
        (Cvx, "135"),
        (Cvx, "140"),
        (Cvx, "141"),
        (Cvx, "144"),
        (Cvx, "149"),
        (Cvx, "150"),
        (Cvx, "153"),
        (Cvx, "155"),
        (Cvx, "158"),
        (Cvx, "161"),
        (Cvx, "166"),
        (Cvx, "168"),
        (Cvx, "171"),
        (Cvx, "185"),
        (Cvx, "186"),
        (Cvx, "197"),
        (Cvx, "205"),
        (Cpt, "90630"),
        (Cpt, "90653"),
        (Cpt, "90654"),
        (Cpt, "90655"),
        (Cpt, "90656"),
        (Cpt, "90657"),
        (Cpt, "90658"),
        (Cpt, "90660"),
        (Cpt, "90661"),
        (Cpt, "90662"),
        (Cpt, "90672"),
        (Cpt, "90673"),
        (Cpt, "90674"),
        (Cpt, "90682"),
        (Cpt, "90685"),
        (Cpt, "90686"),
        (Cpt, "90687"),
        (Cpt, "90688"),
        (Cpt, "90689"),
        (Cpt, "90694"),
        (Cpt, "90756"),
        (Hcpcs, "G0008"),
    ],
};

/// Pneumococcal vaccines (CMS127).
pub static PNEUMOCOCCAL_VACCINE: ValueSet = ValueSet {
    name: "Pneumococcal Vaccine",
    codes: &[
        (Cvx, "33"),
        (Cvx, "100"),
        (Cvx, "109"),
        (Cvx, "133"),
        (Cvx, "152"),
        (Cvx, "215"),
        (Cvx, "216"),
        (Cpt, "90670"),
        (Cpt, "90671"),
        (Cpt, "90677"),
        (Cpt, "90732"),
        (Hcpcs, "G0009"),
    ],
};

/// Hospice care (the common exclusion).
pub static HOSPICE: ValueSet = ValueSet {
    name: "Hospice Care",
    codes: &[
        (Cpt, "99377"),
        (Cpt, "99378"),
        (Hcpcs, "G9473"),
        (Hcpcs, "G9474"),
        (Hcpcs, "G9475"),
        (Hcpcs, "G9476"),
        (Hcpcs, "G9477"),
        (Hcpcs, "G9478"),
        (Hcpcs, "G9479"),
        (Hcpcs, "Q5003"),
        (Hcpcs, "Q5004"),
        (Hcpcs, "Q5005"),
        (Hcpcs, "Q5006"),
        (Hcpcs, "Q5007"),
        (Hcpcs, "Q5008"),
        (Hcpcs, "S9126"),
        (Snomed, "385763009"),
        (Snomed, "183919006"),
        (Snomed, "183920000"),
        (Snomed, "183921001"),
        (Snomed, "305336008"),
        (Snomed, "305911006"),
    ],
};

/// Palliative care (exclusion in CMS122, 124, 125, 130, 131, 165).
pub static PALLIATIVE: ValueSet = ValueSet {
    name: "Palliative Care",
    codes: &[
        (Icd, "Z51.5"),
        (Hcpcs, "G9054"),
        (Hcpcs, "M1017"),
        (Snomed, "103735009"),
    ],
};

/// Depression or bipolar disorder diagnosed before the screen (CMS2 exclusion).
pub static DEPRESSION_OR_BIPOLAR: ValueSet = ValueSet {
    name: "Depression diagnosis / Bipolar diagnosis",
    codes: &[
        (Icd, "F30*"),
        (Icd, "F31*"),
        (Icd, "F32*"),
        (Icd, "F33*"),
        (Icd, "F34.1"),
        (Icd, "F34.8*"),
        (Icd, "F34.9"),
    ],
};

/// Follow-up for a positive depression screen as a procedure (CMS2 "Follow Up for Adult
/// Depression", psychotherapy / psychiatric evaluation codes; a referral order or an
/// antidepressant also count, see the rule).
pub static DEPRESSION_FOLLOW_UP: ValueSet = ValueSet {
    name: "Follow Up for Depression",
    codes: &[
        (Cpt, "90791"),
        (Cpt, "90792"),
        (Cpt, "90832"),
        (Cpt, "90834"),
        (Cpt, "90837"),
        (Hcpcs, "G8431"),
        (Snomed, "108313002"),
        (Snomed, "385721005"),
    ],
};

/// Tobacco cessation counseling (CMS138).
pub static TOBACCO_CESSATION_COUNSELING: ValueSet = ValueSet {
    name: "Tobacco Use Cessation Counseling",
    codes: &[
        (Cpt, "99406"),
        (Cpt, "99407"),
        (Cpt, "4000F"),
        (Cpt, "4001F"),
        (Hcpcs, "S9453"),
        (Snomed, "225323000"),
        (Snomed, "710081004"),
    ],
};

/// Substance use disorder (alcohol and other drugs, not nicotine: CMS137, FUA).
pub static SUBSTANCE_USE_DISORDER: ValueSet = ValueSet {
    name: "Alcohol and Drug Dependence",
    codes: &[
        (Icd, "F10*"),
        (Icd, "F11*"),
        (Icd, "F12*"),
        (Icd, "F13*"),
        (Icd, "F14*"),
        (Icd, "F15*"),
        (Icd, "F16*"),
        (Icd, "F18*"),
        (Icd, "F19*"),
    ],
};

/// Mental illness and intentional self-harm (FUM denominators).
pub static MENTAL_ILLNESS: ValueSet = ValueSet {
    name: "Mental Illness / Intentional Self-Harm",
    codes: &[
        (Icd, "F20*"),
        (Icd, "F21*"),
        (Icd, "F22*"),
        (Icd, "F23*"),
        (Icd, "F24*"),
        (Icd, "F25*"),
        (Icd, "F28*"),
        (Icd, "F29*"),
        (Icd, "F30*"),
        (Icd, "F31*"),
        (Icd, "F32*"),
        (Icd, "F33*"),
        (Icd, "F34*"),
        (Icd, "F39*"),
        (Icd, "F40*"),
        (Icd, "F41*"),
        (Icd, "F42*"),
        (Icd, "F43*"),
        (Icd, "F44*"),
        (Icd, "F45*"),
        (Icd, "F48*"),
        (Icd, "F50*"),
        (Icd, "F60*"),
        (Icd, "F63*"),
        (Icd, "F68*"),
        (Icd, "F84*"),
        (Icd, "F90*"),
        (Icd, "F91*"),
        (Icd, "F93*"),
        (Icd, "F94*"),
        (Icd, "F95*"),
        (Icd, "F98*"),
        (Icd, "F99*"),
        (Icd, "T14.91*"),
        (Icd, "X71*"),
        (Icd, "X72*"),
        (Icd, "X73*"),
        (Icd, "X74*"),
        (Icd, "X75*"),
        (Icd, "X76*"),
        (Icd, "X77*"),
        (Icd, "X78*"),
        (Icd, "X79*"),
        (Icd, "X80*"),
        (Icd, "X81*"),
        (Icd, "X82*"),
        (Icd, "X83*"),
    ],
};

/// Medication name stems (lower case, matched as whole words in the drug name) for the
/// concepts the rules need. RxNorm expansions would replace these; names are what Kipu sends.
pub mod drugs {
    /// Antidepressants (CMS2 pharmacological follow-up).
    pub const ANTIDEPRESSANTS: &[&str] = &[
        "sertraline",
        "escitalopram",
        "citalopram",
        "fluoxetine",
        "paroxetine",
        "fluvoxamine",
        "bupropion",
        "venlafaxine",
        "desvenlafaxine",
        "duloxetine",
        "mirtazapine",
        "trazodone",
        "vortioxetine",
        "vilazodone",
        "nortriptyline",
        "amitriptyline",
    ];
    /// Tobacco cessation pharmacotherapy (CMS138).
    pub const TOBACCO_CESSATION: &[&str] = &["nicotine", "varenicline", "bupropion"];
    /// Medications for alcohol or opioid use disorder (CMS137 treatment events).
    pub const SUD_PHARMACOTHERAPY: &[&str] = &[
        "buprenorphine",
        "naltrexone",
        "methadone",
        "acamprosate",
        "disulfiram",
    ];
    /// Long-acting SUD medications: one event counts as engagement (CMS137).
    pub const SUD_LONG_ACTING: &[&str] = &[
        "extended-release",
        "extended release",
        "implant",
        "sublocade",
        "vivitrol",
        "probuphine",
    ];

    /// True if any word of `name` (lower-cased, split on non-letters) is in `list`, or a
    /// multi-word entry occurs in it.
    pub fn matches(name: &str, list: &[&str]) -> bool {
        let lower = name.to_ascii_lowercase();
        list.iter().any(|entry| {
            if entry.contains([' ', '-']) {
                lower.contains(entry)
            } else {
                lower
                    .split(|c: char| !c.is_ascii_alphabetic())
                    .any(|w| w == *entry)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_prefixes_match_only_their_category() {
        let f1020 = Code::new(Icd, "F10.20").unwrap();
        let f17 = Code::new(Icd, "F17.210").unwrap();
        assert!(SUBSTANCE_USE_DISORDER.contains(&f1020));
        assert!(!SUBSTANCE_USE_DISORDER.contains(&f17));
        let cpt = Code::new(Cpt, "45378").unwrap();
        assert!(COLONOSCOPY.contains(&cpt));
        assert!(!MAMMOGRAPHY.contains(&cpt));
    }

    #[test]
    fn drug_names_match_whole_words() {
        assert!(drugs::matches(
            "Buprenorphine/naloxone",
            drugs::SUD_PHARMACOTHERAPY
        ));
        assert!(drugs::matches(
            "Naltrexone extended-release",
            drugs::SUD_LONG_ACTING
        ));
        assert!(!drugs::matches("Naltrexone", drugs::SUD_LONG_ACTING));
        assert!(!drugs::matches("Nicotinamide", drugs::TOBACCO_CESSATION));
        assert!(drugs::matches("Nicotine patch", drugs::TOBACCO_CESSATION));
    }
}
