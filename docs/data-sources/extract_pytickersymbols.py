"""Company -> country / industry facts from pytickersymbols (MIT; data from Wikipedia index lists).
pip install pytickersymbols==1.17.10
'Large' = member of a blue-chip index (S&P 100, Dow Jones, NASDAQ 100, DAX, CAC 40, FTSE 100,
NIKKEI 225, EURO STOXX 50, AEX, IBEX 35, BEL 20, Switzerland 20, OMX 25/30); field large=true.
Subject is the name with legal suffixes stripped (raw name kept in 'raw_name').
Note: 'country' is the listing/headquarters country as given in the package.
Output: pytickersymbols.jsonl (company_country, company_industry).
"""
import json, os, re, ast, collections
from pytickersymbols import PyTickerSymbols
from importlib.metadata import version

SRC = f"pytickersymbols=={version('pytickersymbols')}"
HERE = os.path.dirname(os.path.abspath(__file__))
BLUE = {"S&P 100", "DOW JONES", "NASDAQ 100", "DAX", "CAC_40", "FTSE 100", "NIKKEI 225", "EURO STOXX 50",
        "AEX", "IBEX 35", "BEL 20", "Switzerland 20", "OMX Helsinki 25", "OMX Stockholm 30"}
SUFFIX = re.compile(r"(,?\s+(Inc\.?|Incorporated|Corp\.?|Corporation|Co\.?|Company|Ltd\.?|Limited|plc|PLC|AG|SE|S\.A\.|SA|N\.V\.|NV|"
                    r"Holdings?|Group|& Co\.? KGaA|KGaA|ASA|AB|Oyj|S\.p\.A\.|SpA|The|Class [A-C]|\(Class [A-C]\))\.?)+$")
s = PyTickerSymbols()
members = collections.defaultdict(set)
for idx in s.get_all_indices():
    for st in s.get_stocks_by_index(idx):
        members[st["name"]].add(idx)
out, seen = [], set()
for st in s.get_all_stocks():
    raw = st["name"]
    if raw in seen:
        continue
    seen.add(raw)
    name = SUFFIX.sub("", raw).strip(" ,") or raw
    inds = sorted(members[raw])
    base = {"source": SRC, "raw_name": raw, "indices": inds, "large": bool(BLUE & set(inds))}
    if st.get("country"):
        out.append({"subject": name, "relation": "company_country", "object": st["country"], **base})
    industries = st.get("industries") or []
    if isinstance(industries, str):
        industries = ast.literal_eval(industries)
    if industries:
        d = {"subject": name, "relation": "company_industry", "object": industries[0], **base}
        if len(industries) > 1:
            d["alt_objects"] = industries[1:]
        out.append(d)
with open(os.path.join(HERE, "pytickersymbols.jsonl"), "w") as fh:
    for d in out:
        fh.write(json.dumps(d, ensure_ascii=False) + "\n")
print(collections.Counter((d["relation"], d["large"]) for d in out))
