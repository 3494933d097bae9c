"""Register, sign in and out, change the password, sign out everywhere."""

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy.exc import IntegrityError

from microblog import i18n
from microblog.auth.addresses import announce_address_change, announce_confirmation_wanted
from microblog.auth.forms import (
    EmailChangeForm,
    LanguageForm,
    LoginForm,
    PasswordChangeForm,
    RegistrationForm,
    ResendConfirmationForm,
    SignOutEverywhereForm,
)
from microblog.auth.models import User, canonical, find_user
from microblog.auth.sessions import (
    SIGN_IN_ENDED,
    announce_password_changed,
    announce_revoked,
    close_all_sign_ins,
    close_sign_in,
    note_ended_sign_in,
    sign_in,
    sign_out,
)
from microblog.extensions import db
from microblog.forms import Form
from microblog.i18n import remember_language
from microblog.throttle import limit
from microblog.urls import safe_next

bp = Blueprint("auth", __name__, url_prefix="/auth")


# Requests that say nothing to a person: a static file's costs no look at the sign-in.
SILENT_ENDPOINTS = ("static", "bootstrap.static")


@bp.before_app_request
def say_why_signed_out() -> None:
    """A browser whose sign-in ended elsewhere (a password change, "sign out everywhere") or
    expired is told why on its next page, once; its open pages learn it from their stream."""
    if request.endpoint not in SILENT_ENDPOINTS and note_ended_sign_in():
        flash(str(SIGN_IN_ENDED), "warning")


def account_key() -> str:
    """Name the account a login attempt is for, however its name is spelt."""
    return "account:" + canonical(request.form.get("username", "").strip())[:64]


def own_account_key() -> str:
    """Name the signed-in user's account: its password checks share the sign-in form's
    budget, so a stolen session cannot guess the password any faster than a stranger."""
    return "account:" + canonical(current_user.username)[:64]


@bp.route("/register", methods=["GET", "POST"])
@limit("REGISTER_LIMIT_PER_ADDRESS")
def register():
    if current_user.is_authenticated:
        return redirect(url_for("posts.index"))
    form = RegistrationForm()
    if form.validate_on_submit():
        user = User(username=form.username.data, email=form.email.data.lower())
        user.set_password(form.password.data)
        db.session.add(user)
        try:
            db.session.commit()
        except IntegrityError:
            # Someone registered the same name or email between validation and commit.
            db.session.rollback()
            form.username.errors.append(_("That username or email was just taken."))
        else:
            announce_confirmation_wanted(user.id)
            sign_in(user, remember=False)
            flash(_("Welcome, %(name)s! To get emails from us, open the link we sent to your "
                    "address.", name=user.username), "success")  # fmt: skip
            return redirect(url_for("posts.index"))
    return render_template(
        "auth/register.html", title=_("Register"), form=form
    ), 400 if form.errors else 200


@bp.route("/login", methods=["GET", "POST"])
@limit("LOGIN_LIMIT_PER_ADDRESS")
@limit("LOGIN_LIMIT_PER_ACCOUNT", key=account_key)
def login():
    if current_user.is_authenticated:
        return redirect(url_for("posts.index"))
    form = LoginForm()
    if form.validate_on_submit():
        user = find_user(form.username.data)
        if user is None or not user.check_password(form.password.data):
            flash(_("Invalid username or password."), "danger")
            return render_template("auth/login.html", title=_("Sign in"), form=form), 400
        sign_in(user, remember=form.remember_me.data)
        return redirect(safe_next(request.args.get("next")) or url_for("posts.index"))
    return render_template(
        "auth/login.html", title=_("Sign in"), form=form
    ), 400 if form.errors else 200


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    user_id = current_user.id
    closed = close_sign_in(current_user)
    db.session.commit()
    announce_revoked(user_id, closed)
    sign_out()
    flash(_("You have been signed out."), "info")
    return redirect(url_for("posts.index"))


@bp.route("/account", methods=["GET", "POST"])
@login_required
@limit("LOGIN_LIMIT_PER_ACCOUNT", key=own_account_key)
def account():
    form = PasswordChangeForm()
    if form.validate_on_submit():
        user = current_user._get_current_object()
        if not user.check_password(form.current_password.data):
            form.current_password.errors.append(_("That is not your current password."))
        else:
            user.set_password(form.password.data)
            close_all_sign_ins(user)
            remembered = current_app.config["REMEMBER_COOKIE_NAME"] in request.cookies
            sign_in(user, remember=remembered)
            # Every stream open now is an old sign-in's; the new one's open after this answer.
            announce_password_changed(user.id)
            flash(_("Your password is changed; every other device is signed out."), "success")
            return redirect(url_for("auth.account"))
    return account_page(form=form), 400 if form.errors else 200


def account_page(**forms: Form) -> str:
    """Render the account page with its forms, ``forms`` as submitted, the others fresh."""
    forms.setdefault("form", PasswordChangeForm(formdata=None))
    forms.setdefault("everywhere", SignOutEverywhereForm(formdata=None))
    forms.setdefault("language", LanguageForm(formdata=None, language=current_user.language or ""))
    forms.setdefault("address", EmailChangeForm(formdata=None, prefix="address"))
    forms.setdefault("resend", ResendConfirmationForm(formdata=None))
    return render_template("auth/account.html", title=_("Account"), **forms)


@bp.route("/email", methods=["POST"])
@login_required
@limit("LOGIN_LIMIT_PER_ACCOUNT", key=own_account_key)
@limit("CONFIRM_LIMIT_PER_ACCOUNT", key=own_account_key)
def change_email():
    """Ask to change the account's address: it changes once the new one is confirmed."""
    form = EmailChangeForm(prefix="address")
    if form.validate_on_submit():
        user = current_user._get_current_object()
        address = form.email.data.lower()
        if not user.check_password(form.current_password.data):
            form.current_password.errors.append(_("That is not your current password."))
        elif canonical(address) == user.email_key:
            form.email.errors.append(_("That is already your address."))
        else:
            user.pending_email = address
            db.session.commit()
            announce_address_change(user.id)
            flash(_("We sent a link to %(address)s: your address changes once you open it.",
                    address=address), "success")  # fmt: skip
            return redirect(url_for("auth.account"))
    return account_page(address=form), 400


@bp.route("/confirmation", methods=["POST"])
@login_required
@limit("CONFIRM_LIMIT_PER_ACCOUNT", key=own_account_key)
def resend_confirmation():
    """Send the confirmation link again, to the address waiting for one."""
    form = ResendConfirmationForm()
    if not form.validate_on_submit():
        return account_page(resend=form), 400
    if current_user.pending_email or not current_user.email_confirmed:
        announce_confirmation_wanted(current_user.id)
        flash(_("A new link is on its way."), "success")
    else:
        flash(_("Your address is confirmed already."), "info")
    return redirect(url_for("auth.account"))


@bp.route("/language", methods=["POST"])
def language():
    """Choose the site's language: saved on the account when signed in, else in a cookie."""
    form = LanguageForm()
    if not form.validate():
        if current_user.is_authenticated:
            return account_page(language=form), 400
        abort(400, _("Choose a language from the list."))
    chosen = form.language.data or None
    if current_user.is_authenticated:
        current_user.language = chosen
        db.session.commit()
    back = safe_next(request.form.get("next")) or url_for(
        "auth.account" if current_user.is_authenticated else "posts.index"
    )
    response = redirect(back, 303)
    if not current_user.is_authenticated:
        remember_language(response, chosen)
    with i18n.language(chosen or i18n.browser_language()):
        name = i18n.NAMES_IN_A_SENTENCE[i18n.current_language()]
        flash(_("The site now speaks %(language)s.", language=name), "success")
    return response


@bp.route("/sign_out_everywhere", methods=["POST"])
@login_required
def sign_out_everywhere():
    user_id = current_user.id
    close_all_sign_ins(current_user)
    db.session.commit()
    announce_revoked(user_id)
    sign_out()
    flash(_("You have been signed out on every device."), "info")
    return redirect(url_for("auth.login"))
