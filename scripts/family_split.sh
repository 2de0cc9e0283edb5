#!/usr/bin/env bash
# Text lines for choosing a recognizer recipe on one split and confirming it on
# another, neither sharing a font family or a word with the training data (the
# shared lines: DejaVu, ../shared/data/make_textlines.py's word set "a") or with
# each other; words with doubled letters, a third capitalised or in capitals.
#
#   val:   Liberation and Open Sans faces, 300 lines  (choose here)
#   test:  FreeFont and URW base35 text faces, 400 lines  (confirm here)
#   train: DejaVu (the shared lines' faces) and the shared lines' words, cased the
#          same way, 1000 lines: training lines with capitals (the shared ones have none)
#   train-wide: 2000 lines in DejaVu, Roboto, Lato, Carlito, Caladea and Cantarell (none
#          of them in val or test) from a wider word list of its own (none of val's or
#          test's words), cased the same way
#
#   bash scripts/family_split.sh [OUT_DIR]     (default: bench-out/families)
#
# Installs the fonts (Debian packages) and Pillow (bench/.venv-data) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench-out/families}"
tt=/usr/share/fonts/truetype
ot=/usr/share/fonts/opentype
fonts="fonts-liberation2 fonts-freefont-ttf fonts-open-sans fonts-urw-base35 fonts-roboto fonts-lato fonts-crosextra-carlito fonts-crosextra-caladea fonts-cantarell"
if [ ! -d "$tt/liberation2" ] || [ ! -d "$tt/freefont" ] || [ ! -d "$tt/open-sans" ] || [ ! -d "$ot/urw-base35" ] \
    || [ ! -d "$tt/roboto" ] || [ ! -d "$tt/lato" ] || [ ! -d "$tt/crosextra" ] || [ ! -d "$ot/cantarell" ]; then
    echo "installing $fonts" >&2
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    # shellcheck disable=SC2086
    $sudo_cmd apt-get install -y -q $fonts >/dev/null
fi
venv=bench/.venv-data
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import PIL" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "pillow>=10,<13"
fi
train_words=the,quick,brown,fox,jumps,over,lazy,dog,model,compiler,depthwise,convolution,accuracy,invoice,total,amount,date,number,page,table,figure,result,value
val_words=office,coffee,summer,bottle,dinner,apple,green,little,common,happy,million,pizza,access,mirror,yellow,pepper,traffic,cotton,hello,Monday,river,garden,window
wide_words=$train_words,address,balance,account,street,city,phone,email,order,price,quantity,item,customer,service,report,summary,section,chapter,note,reference,image,text,line,word,paper,review,design,system,network,layer,kernel,channel,weight,input,output,batch,train,test,receipt,payment,credit,debit,bank,store,school,book,class,room,food,free,need,keep,three,week,seen,fully,tall,small,hill,wall,will,well,skill,spell,offer,effect,error,arrow,carry,sorry,happen,supper,sudden,puzzle,jazz,fuzzy,buzz,dress,press,less,loss,boss,grass,Tuesday,Friday,January,March,London,Paris
test_words=letter,butter,battery,college,middle,success,tomorrow,shell,wood,floor,cooking,dollar,annual,message,support,matter,running,village,glass,sheet,north,planet,silver,market
"$venv/bin/python" scripts/render_lines.py "$out/val" 300 303 "$val_words" "$tt/liberation2/*.ttf" "$tt/open-sans/*.ttf"
# URW's text faces (not the symbol, dingbat and script ones)
"$venv/bin/python" scripts/render_lines.py "$out/test" 400 404 "$test_words" "$tt/freefont/*.ttf" \
    "$ot/urw-base35/Nimbus*.otf" "$ot/urw-base35/[CP]0[0-9][0-9]-*.otf" "$ot/urw-base35/URW*.otf"
"$venv/bin/python" scripts/render_lines.py "$out/train" 1000 505 "$train_words" "$tt/dejavu/*.ttf"
"$venv/bin/python" scripts/render_lines.py "$out/train-wide" 2000 606 "$wide_words" "$tt/dejavu/*.ttf" \
    "$tt/roboto/unhinted/RobotoTTF/*.ttf" "$tt/lato/*.ttf" "$tt/crosextra/*.ttf" "$ot/cantarell/*.otf"
