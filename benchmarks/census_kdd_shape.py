r"""UCI census-income (KDD) at its published size, for timing the MMoE paper's data path.

  python -m benchmarks.census_kdd_shape --out=/work/scale_data/raw/scale_1/census_kdd
  python -m benchmarks.census_kdd_shape --out=/tmp/kdd --scale=0.01      # 1,995 + 998 rows

Writes `census-income.data` (199,523 rows) and `census-income.test` (99,762 rows) in the UCI
layout that seqrec_jax/data/census_kdd.py reads (tests/fixtures/census_kdd): no header, 42
values joined by ', ', every categorical value spelt as census-income.names spells it (trailing
spaces of e.g. 'Handlers equip cleaners etc ' kept, '?' for missing), integers for the
continuous columns, the sampling weight with two decimals, the label '- 50000.' / '50000+.'.
Values are synthetic: per-column marginals set by hand to resemble the real file's, not fitted
to it (about half the people are children or out of the labour force; 'Not in universe'
dominates many columns), a few of the real dependencies (children: education 'Children', never
married, no job, no income; detailed industry/occupation codes map to one major code; the
household summary follows the detailed household status; citizenship follows the country of
birth; year 95 rows have '?' for the migration columns) and an income label (~6% positive)
that depends on education, age, sex and weeks worked, so a model has something to learn.
Seeded, so a rerun writes the same bytes. Draws are vectorised numpy; the text is joined row by
row (~2 s for the full size). One JSON line (rows, bytes, seconds, positive rates) goes to
stdout.
"""
from __future__ import annotations

import json
import os
import time

from absl import app, flags
import numpy as np

from seqrec_jax.data import census_kdd

ROWS = {'census-income.data': 199_523, 'census-income.test': 99_762}
NIU = 'Not in universe'

# (value, weight) per categorical column; weights need not sum to 1.
CLASS_WORKER = ((NIU, 50.2), ('Private', 36.1), ('Self-employed-not incorporated', 4.2),
                ('Local government', 3.9), ('State government', 2.1),
                ('Self-employed-incorporated', 1.6), ('Federal government', 1.5),
                ('Never worked', 0.2), ('Without pay', 0.1))
EDUCATION = (('High school graduate', 24.3), ('Some college but no degree', 13.9),
             ('10th grade', 3.8), ('Bachelors degree(BA AB BS)', 10.0),
             ('7th and 8th grade', 4.0), ('11th grade', 3.4), ('9th grade', 3.1),
             ('Masters degree(MA MS MEng MEd MSW MBA)', 3.3), ('12th grade no diploma', 1.1),
             ('Associates degree-occup /vocational', 2.7),
             ('Associates degree-academic program', 2.2), ('5th or 6th grade', 1.6),
             ('1st 2nd 3rd or 4th grade', 0.9), ('Prof school degree (MD DDS DVM LLB JD)', 0.9),
             ('Doctorate degree(PhD EdD)', 0.6), ('Less than 1st grade', 0.4))
HS_COLLEGE = ((NIU, 93.7), ('High school', 3.5), ('College or university', 2.8))
MARITAL = (('Married-civilian spouse present', 57.0), ('Never married', 24.0),
           ('Divorced', 8.7), ('Widowed', 7.2), ('Separated', 2.4),
           ('Married-spouse absent', 1.0), ('Married-A F spouse present', 0.3))
MAJOR_IND = ('Entertainment', 'Social services', 'Agriculture', 'Education',
             'Public administration', 'Manufacturing-durable goods',
             'Manufacturing-nondurable goods', 'Wholesale trade', 'Retail trade',
             'Finance insurance and real estate', 'Private household services',
             'Business and repair services', 'Personal services except private HH',
             'Construction', 'Medical except hospital', 'Other professional services',
             'Transportation', 'Utilities and sanitary services', 'Mining and quarrying',
             'Communications', 'Hospital services', 'Forestry and fisheries', 'Armed Forces')
MAJOR_OCC = ('Professional specialty', 'Other service', 'Farming forestry and fishing', 'Sales',
             'Adm support including clerical', 'Protective services',
             'Handlers equip cleaners etc ', 'Precision production craft & repair',
             'Technicians and related support', 'Machine operators assmblrs & inspctrs',
             'Transportation and material moving', 'Executive admin and managerial',
             'Private household services', 'Armed Forces')
RACE = (('White', 83.9), ('Black', 10.2), ('Asian or Pacific Islander', 2.9), ('Other', 1.8),
        ('Amer Indian Aleut or Eskimo', 1.1))
HISP = (('All other', 86.2), ('Mexican-American', 4.1), ('Mexican (Mexicano)', 3.6),
        ('Central or South American', 2.0), ('Puerto Rican', 1.7), ('Other Spanish', 1.2),
        ('Cuban', 0.6), ('NA', 0.4), ('Do not know', 0.15), ('Chicano', 0.15))
SEX = (('Female', 52.1), ('Male', 47.9))
UNION = ((NIU, 90.4), ('No', 8.0), ('Yes', 1.6))
UNEMP = ((NIU, 97.0), ('Other job loser', 1.0), ('Re-entrant', 1.0),
         ('Job loser - on layoff', 0.5), ('Job leaver', 0.3), ('New entrant', 0.2))
FULL_PART = (('Full-time schedules', 52.0), ('Not in labor force', 34.0),
             ('PT for non-econ reasons usually FT', 4.5), ('Unemployed full-time', 3.1),
             ('PT for econ reasons usually PT', 1.6), ('Unemployed part- time', 1.0),
             ('PT for econ reasons usually FT', 0.8), ('Children or Armed Forces', 3.0))
TAX_FILER = (('Joint both under 65', 46.0), ('Single', 26.0), ('Joint both 65+', 5.6),
             ('Head of household', 5.3), ('Joint one under 65 & one 65+', 2.8),
             ('Nonfiler', 14.3))
REGION = ((NIU, 92.1), ('South', 2.5), ('West', 2.0), ('Midwest', 1.8), ('Northeast', 1.4),
          ('Abroad', 0.3))
STATES = ('California', 'Utah', 'Florida', 'North Carolina', 'Abroad', 'Oklahoma', 'Minnesota',
          'Indiana', 'North Dakota', 'New Mexico', 'Michigan', 'Alaska', 'Kentucky', 'Arizona',
          'New Hampshire', 'Wyoming', 'Colorado', 'Oregon', 'West Virginia', 'Georgia',
          'Montana', 'Alabama', 'Nevada', 'Texas', 'Pennsylvania', 'New York', 'Ohio',
          'Louisiana', 'Illinois', 'Iowa', 'Arkansas', 'Virginia', 'Tennessee', 'Missouri',
          'South Carolina', 'Mississippi', 'Massachusetts', 'New Jersey', 'Wisconsin',
          'Maryland', 'Kansas', 'Nebraska', 'Idaho', 'Connecticut', 'Vermont', 'Maine',
          'South Dakota', 'District of Columbia', 'Delaware')
# Detailed household status -> household summary (the summary column follows it).
HH = (('Householder', 27.0, 'Householder'),
      ('Child <18 never marr not in subfamily', 25.0, 'Child under 18 never married'),
      ('Spouse of householder', 21.0, 'Spouse of householder'),
      ('Nonfamily householder', 11.0, 'Householder'),
      ('Child 18+ never marr Not in a subfamily', 6.0, 'Child 18 or older'),
      ('Secondary individual', 3.1, 'Nonrelative of householder'),
      ('Other Rel 18+ ever marr not in subfamily', 1.0, 'Other relative of householder'),
      ('Grandchild <18 never marr child of subfamily RP', 0.9, 'Other relative of householder'),
      ('Other Rel 18+ never marr not in subfamily', 0.9, 'Other relative of householder'),
      ('Grandchild <18 never marr not in subfamily', 0.5, 'Other relative of householder'),
      ('Child 18+ ever marr Not in a subfamily', 0.5, 'Child 18 or older'),
      ('Child under 18 of RP of unrel subfamily', 0.4, 'Nonrelative of householder'),
      ('RP of unrelated subfamily', 0.35, 'Nonrelative of householder'),
      ('Child 18+ ever marr RP of subfamily', 0.3, 'Child 18 or older'),
      ('Other Rel 18+ ever marr RP of subfamily', 0.3, 'Other relative of householder'),
      ('Other Rel <18 never marr child of subfamily RP', 0.3, 'Other relative of householder'),
      ('Other Rel <18 never marr not in subfamily', 0.3, 'Other relative of householder'),
      ('Other Rel 18+ spouse of subfamily RP', 0.25, 'Other relative of householder'),
      ('Child 18+ never marr RP of subfamily', 0.2, 'Child 18 or older'),
      ('Child 18+ spouse of subfamily RP', 0.12, 'Child 18 or older'),
      ('Other Rel 18+ never marr RP of subfamily', 0.1, 'Other relative of householder'),
      ('Grandchild 18+ never marr not in subfamily', 0.1, 'Other relative of householder'),
      ('In group quarters', 0.1, 'Group Quarters- Secondary individual'),
      ('Child <18 never marr RP of subfamily', 0.05, 'Child under 18 never married'),
      ('Spouse of RP of unrelated subfamily', 0.05, 'Nonrelative of householder'),
      ('Child <18 ever marr not in subfamily', 0.03, 'Child under 18 ever married'),
      ('Other Rel <18 never married RP of subfamily', 0.02, 'Other relative of householder'),
      ('Grandchild 18+ ever marr not in subfamily', 0.02, 'Other relative of householder'),
      ('Child <18 spouse of subfamily RP', 0.01, 'Child under 18 ever married'),
      ('Other Rel <18 ever marr RP of subfamily', 0.01, 'Other relative of householder'),
      ('Child <18 ever marr RP of subfamily', 0.01, 'Child under 18 ever married'),
      ('Other Rel <18 ever marr not in subfamily', 0.01, 'Other relative of householder'),
      ('Grandchild 18+ ever marr RP of subfamily', 0.01, 'Other relative of householder'),
      ('Grandchild <18 never marr RP of subfamily', 0.01, 'Other relative of householder'),
      ('Other Rel <18 spouse of subfamily RP', 0.005, 'Other relative of householder'),
      ('Grandchild 18+ never marr RP of subfamily', 0.005, 'Other relative of householder'),
      ('Grandchild <18 ever marr not in subfamily', 0.003, 'Other relative of householder'),
      ('Grandchild 18+ spouse of subfamily RP', 0.002, 'Other relative of householder'))
MIG_MSA = (('Nonmover', 82.0), ('MSA to MSA', 10.6), ('NonMSA to nonMSA', 2.8), (NIU, 1.6),
           ('MSA to nonMSA', 0.8), ('NonMSA to MSA', 0.6), ('Abroad to MSA', 0.9),
           ('Not identifiable', 0.6), ('Abroad to nonMSA', 0.1))
MIG_REG = (('Nonmover', 82.0), ('Same county', 9.8), ('Different county same state', 2.8),
           (NIU, 1.6), ('Different region', 1.2), ('Different state same division', 1.0),
           ('Abroad', 1.1), ('Different division same region', 0.5))
MIG_MOVE = (('Nonmover', 82.0), ('Same county', 9.8), ('Different county same state', 2.8),
            (NIU, 1.6), ('Different state in South', 1.0), ('Different state in West', 0.7),
            ('Different state in Midwest', 0.6), ('Abroad', 1.1),
            ('Different state in Northeast', 0.4))
SUNBELT = ((NIU, 84.0), ('No', 10.0), ('Yes', 6.0))
FAM_CHILD = (('Both parents present', 72.0), ('Mother only present', 21.0),
             ('Father only present', 3.0), ('Neither parent present', 4.0))
COUNTRIES = ('Mexico', 'Puerto-Rico', 'Italy', 'Canada', 'Germany', 'Philippines', 'Poland',
             'El-Salvador', 'Cuba', 'England', 'China', 'Dominican-Republic', 'Ireland',
             'South Korea', 'India', 'Columbia', 'Japan', 'Vietnam', 'Jamaica', 'Guatemala',
             'Portugal', 'Ecuador', 'Haiti', 'Nicaragua', 'Peru', 'Greece', 'Hungary',
             'Taiwan', 'Iran', 'Honduras', 'Scotland', 'Outlying-U S (Guam USVI etc)',
             'Trinadad&Tobago', 'Yugoslavia', 'France', 'Hong Kong', 'Cambodia', 'Laos',
             'Thailand', 'Holand-Netherlands', 'Panama')
CITIZEN_FOREIGN = (('Foreign born- Not a citizen of U S ', 58.0),
                   ('Foreign born- U S citizen by naturalization', 32.0),
                   ('Native- Born abroad of American Parent(s)', 10.0))
OWN_SELF = (('0', 90.5), ('2', 8.1), ('1', 1.4))
VET_Q = ((NIU, 99.0), ('No', 0.8), ('Yes', 0.2))
VET_B = (('2', 97.0), ('0', 1.5), ('1', 1.5))
NUM_EMP = (0, 1, 2, 3, 4, 5, 6)
NUM_EMP_P = (0.12, 0.19, 0.09, 0.09, 0.13, 0.07, 0.31)        # people who work
# Education -> income logit offset (children never reach 50000+).
EDU_INCOME = {'Doctorate degree(PhD EdD)': 2.6, 'Prof school degree (MD DDS DVM LLB JD)': 2.9,
              'Masters degree(MA MS MEng MEd MSW MBA)': 2.0, 'Bachelors degree(BA AB BS)': 1.5,
              'Associates degree-academic program': 0.7,
              'Associates degree-occup /vocational': 0.6, 'Some college but no degree': 0.4,
              'High school graduate': 0.0}


def _pick(rng, table, n: int) -> np.ndarray:
  """n values drawn from ((value, weight), ...) as an object array."""
  vals = np.array([t[0] for t in table], dtype=object)
  w = np.array([t[1] for t in table], float)
  return vals[rng.choice(len(vals), n, p=w / w.sum())]


def _country(rng, n: int, us: float, missing: float) -> np.ndarray:
  """'United-States' with probability us, '?' with `missing`, else a Zipf-ish foreign one."""
  w = 1.0 / np.arange(1, len(COUNTRIES) + 1) ** 1.2
  w = np.concatenate([[us, missing], (1 - us - missing) * w / w.sum()])
  vals = np.array(('United-States', '?') + COUNTRIES, dtype=object)
  return vals[rng.choice(len(vals), n, p=w)]


def _skewed(rng, n: int, zero: float, median: float, sigma: float, top: int) -> np.ndarray:
  """Integers: 0 with probability `zero`, else log-normal around `median`, capped at `top`."""
  x = np.rint(median * np.exp(sigma * rng.standard_normal(n))).clip(1, top)
  return np.where(rng.random(n) < zero, 0, x).astype(np.int64)


def _code_map(majors, codes: int, seed: int) -> np.ndarray:
  """Major group of each detailed code 0..codes-1 (0 unused); every group gets a code."""
  groups = np.random.default_rng(seed).permutation(np.arange(codes - 1) % len(majors))
  return np.array(majors, object)[np.concatenate([[0], groups])]


def rows(n: int, seed: int) -> dict[str, np.ndarray]:
  """The 42 columns of n people, as object arrays of the strings written to the file."""
  rng = np.random.default_rng(seed)
  child = rng.random(n) < 0.27
  age = np.where(child, rng.integers(0, 18, n),
                 np.clip(18 + rng.gamma(2.0, 13.0, n), 18, 90).astype(np.int64))
  young = age < 15
  old = age >= 65
  # Work: children and a share of adults (more of the old) are out of the labour force.
  works = ~child & (rng.random(n) < np.where(old, 0.15, 0.78))
  t = {}
  t['age'] = age
  cw = _pick(rng, CLASS_WORKER[1:], n)
  t['class_worker'] = np.where(works, cw, NIU).astype(object)
  ind = rng.integers(1, 52, n)
  occ = rng.integers(1, 47, n)
  t['det_ind_code'] = np.where(works, ind, 0)
  t['det_occ_code'] = np.where(works, occ, 0)
  # Each detailed code belongs to one major group and every major group has codes (fixed
  # maps, as in the real recode; code 0 = not in universe).
  ind_major = _code_map(MAJOR_IND, 52, 1)
  occ_major = _code_map(MAJOR_OCC, 47, 2)
  t['major_ind_code'] = np.where(works, ind_major[ind], 'Not in universe or children')
  t['major_occ_code'] = np.where(works, occ_major[occ], NIU)
  edu = _pick(rng, EDUCATION, n)
  low = np.array(['Less than 1st grade', '1st 2nd 3rd or 4th grade', '5th or 6th grade',
                  '7th and 8th grade', '9th grade', '10th grade', '11th grade'], object)
  teen = ~young & (age < 18)
  t['education'] = np.where(young, 'Children', np.where(teen, low[np.clip(age - 12, 0, 6)],
                                                        edu)).astype(object)
  t['wage_per_hour'] = np.where(works, _skewed(rng, n, 0.88, 900, 0.5, 9999), 0)
  hs = _pick(rng, HS_COLLEGE, n)
  t['hs_college'] = np.where(teen, 'High school', np.where(young, NIU, hs)).astype(object)
  t['marital_stat'] = np.where(age < 18, 'Never married', _pick(rng, MARITAL, n)).astype(object)
  t['race'] = _pick(rng, RACE, n)
  t['hisp_origin'] = _pick(rng, HISP, n)
  t['sex'] = _pick(rng, SEX, n)
  t['union_member'] = np.where(works, _pick(rng, UNION[1:], n), NIU).astype(object)
  t['unemp_reason'] = np.where(child, NIU, _pick(rng, UNEMP, n)).astype(object)
  t['full_or_part_emp'] = np.where(child, 'Children or Armed Forces',
                                   np.where(works, _pick(rng, FULL_PART, n),
                                            'Not in labor force')).astype(object)
  t['capital_gains'] = np.where(child, 0, _skewed(rng, n, 0.96, 4000, 1.2, 99999))
  t['capital_losses'] = np.where(child, 0, _skewed(rng, n, 0.98, 1800, 0.3, 4608))
  t['stock_dividends'] = np.where(child, 0, _skewed(rng, n, 0.86, 500, 1.3, 99999))
  t['tax_filer_stat'] = np.where(child, 'Nonfiler', _pick(rng, TAX_FILER, n)).astype(object)
  region = _pick(rng, REGION, n)
  t['region_prev_res'] = region
  state_w = 1.0 / np.arange(1, len(STATES) + 1)
  states = np.array(STATES, object)[rng.choice(len(STATES), n, p=state_w / state_w.sum())]
  states = np.where(rng.random(n) < 0.05, '?', states)
  t['state_prev_res'] = np.where(region == NIU, NIU, states).astype(object)
  hh = np.array([h[0] for h in HH], object)
  hh_w = np.array([h[1] for h in HH])
  kid_rows = np.array(['<18' in h[0] or 'under 18' in h[0] for h in HH])
  adult_p = np.where(kid_rows, 0, hh_w)
  kid_p = np.where(kid_rows, hh_w, 0)
  k = np.where(age < 18, rng.choice(len(HH), n, p=kid_p / kid_p.sum()),
               rng.choice(len(HH), n, p=adult_p / adult_p.sum()))
  t['det_hh_fam_stat'] = hh[k]
  t['det_hh_summ'] = np.array([h[2] for h in HH], object)[k]
  t['instance_weight'] = np.round(np.exp(rng.normal(7.3, 0.5, n)) + 37.87, 2)
  # Year 95 rows have '?' in the migration columns and 'Not in universe under 1 year old'.
  y95 = rng.random(n) < 0.5
  t['mig_chg_msa'] = np.where(y95, '?', _pick(rng, MIG_MSA, n)).astype(object)
  t['mig_chg_reg'] = np.where(y95, '?', _pick(rng, MIG_REG, n)).astype(object)
  t['mig_move_reg'] = np.where(y95, '?', _pick(rng, MIG_MOVE, n)).astype(object)
  same = np.where(rng.random(n) < 0.83, 'Yes', 'No')
  t['mig_same'] = np.where(y95, 'Not in universe under 1 year old', same).astype(object)
  t['mig_prev_sunbelt'] = np.where(y95, '?', _pick(rng, SUNBELT, n)).astype(object)
  emp = np.array(NUM_EMP)[rng.choice(len(NUM_EMP), n, p=NUM_EMP_P)]
  t['num_emp'] = np.where(works, emp, 0)
  t['fam_under_18'] = np.where(age < 18, _pick(rng, FAM_CHILD, n), NIU).astype(object)
  self_c = _country(rng, n, 0.887, 0.017)
  t['country_father'] = np.where(self_c == 'United-States', _country(rng, n, 0.86, 0.03),
                                 self_c).astype(object)
  t['country_mother'] = np.where(self_c == 'United-States', _country(rng, n, 0.87, 0.03),
                                 self_c).astype(object)
  t['country_self'] = self_c
  t['citizenship'] = np.where(
      np.isin(self_c, ['United-States', '?']), 'Native- Born in the United States',
      np.where(np.isin(self_c, ['Puerto-Rico', 'Outlying-U S (Guam USVI etc)']),
               'Native- Born in Puerto Rico or U S Outlying',
               _pick(rng, CITIZEN_FOREIGN, n))).astype(object)
  t['own_or_self'] = np.where(works, _pick(rng, OWN_SELF, n), '0').astype(object)
  t['vet_question'] = np.where(child, NIU, _pick(rng, VET_Q, n)).astype(object)
  t['vet_benefits'] = np.where(child, '0', _pick(rng, VET_B, n)).astype(object)
  full_year = rng.random(n) < 0.62
  t['weeks_worked'] = np.where(works, np.where(full_year, 52, rng.integers(1, 52, n)), 0)
  t['year'] = np.where(y95, '95', '94').astype(object)
  # Income: a logit in education, age, sex and weeks worked; children never earn 50000+.
  edu_off = np.vectorize(lambda e: EDU_INCOME.get(e, -1.0), otypes=[float])(t['education'])
  logit = (-4.6 + edu_off + 0.8 * (t['sex'] == 'Male') + 1.2 * (t['weeks_worked'] == 52)
           + 0.9 * ((age >= 35) & (age < 62)) + 1.0 * (t['capital_gains'] > 5000)
           + 1.0 * (t['class_worker'] == 'Self-employed-incorporated'))
  rich = ~child & (rng.random(n) < 1 / (1 + np.exp(-logit)))
  t['income_50k'] = np.where(rich, '50000+.', '- 50000.').astype(object)
  return t


def lines(t: dict[str, np.ndarray]) -> str:
  """The rows as the UCI file's text: 42 values joined by ', ', one row per line."""
  cols = []
  for c in census_kdd.COLUMNS:
    v = t[c]
    if c == 'instance_weight':
      cols.append(np.char.mod('%.2f', v).tolist())
    else:
      cols.append([str(x) for x in v.tolist()] if v.dtype != object else v.tolist())
  return ''.join(', '.join(r) + '\n' for r in zip(*cols))


def generate(out: str, scale: float = 1.0, seed: int = 0) -> dict:
  """Writes census-income.data and census-income.test under `out`; returns the record."""
  os.makedirs(out, exist_ok=True)
  t0 = time.time()
  stats = {}
  for i, (name, full) in enumerate(ROWS.items()):
    n = max(1, int(round(full * scale)))
    t = rows(n, seed * 2 + i)
    path = os.path.join(out, name)
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
      f.write(lines(t))
    os.replace(path + '.tmp', path)
    stats[name] = {'rows': n, 'bytes': os.path.getsize(path),
                   'income_rate': round(float((t['income_50k'] == '50000+.').mean()), 4),
                   'never_married_rate': round(float((t['marital_stat'] == 'Never married')
                                                     .mean()), 4)}
  return {'out': out, 'scale': scale, 'seed': seed, 'seconds': round(time.time() - t0, 2),
          'rows': sum(s['rows'] for s in stats.values()),
          'bytes': sum(s['bytes'] for s in stats.values()), 'files': stats}


def _define_flags():
  """Flags only when run as a program: benchmarks.data_scale defines --out/--scale/--seed too,
  and pytest imports both modules into one process."""
  return (flags.DEFINE_string('out', '', 'Directory for census-income.data and .test.'),
          flags.DEFINE_float('scale', 1.0, 'Fraction of the published row counts.'),
          flags.DEFINE_integer('seed', 0, 'Generator seed.'))


def main(argv, out, scale, seed):
  del argv
  if not out.value:
    raise app.UsageError('--out is required')
  print(json.dumps(generate(out.value, scale.value, seed.value), sort_keys=True), flush=True)


if __name__ == '__main__':
  _flags = _define_flags()
  app.run(lambda argv: main(argv, *_flags))
